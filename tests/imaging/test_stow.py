"""STOW-RS: instances in, each bad part refused with its own PS3.18 reason, nothing half kept."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from sqlalchemy import select

from services.imaging.dicomweb import stow
from services.imaging.stores import FileStore, NotFoundInStore, Store
from shared import audit
from shared.identity.models import Role
from shared.platform import Platform
from shared.problems import BadRequest
from shared.registry.models import Institution
from tests.factories import Factory
from tests.imaging import factories as dicom
from tests.imaging.conftest import OrthancServer

PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


def multipart(*parts: bytes | tuple[bytes, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b""
    for part in parts:
        data, kind = part if isinstance(part, tuple) else (part, "application/dicom")
        body += f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def nested(depth: int) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = (
        generate_uid(),
        generate_uid(),
        generate_uid(),
    )
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    inner = Dataset()
    inner.CodeValue = "X"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    ds.ContentSequence = Sequence([inner])
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def failures(body: dict[str, Any]) -> list[int]:
    return [item["00081197"]["Value"][0] for item in body.get("00081198", {}).get("Value", [])]


def referenced(body: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = body.get("00081199", {}).get("Value", [])
    return items


def originals(platform: Platform, institution: Institution) -> Path:
    return platform.settings.data_dir / "imaging" / "originals" / institution.code


def leftovers(platform: Platform) -> list[Path]:
    return list((platform.settings.data_dir / "tmp").rglob("*"))


async def post(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    *parts: bytes | tuple[bytes, str],
    path: str = "/dicomweb/studies",
) -> httpx.Response:
    body, content_type = multipart(*parts)
    return await client.post(path, content=body, headers={**headers, "Content-Type": content_type})


@pytest.fixture
async def institution(factory: Factory) -> Institution:
    return await factory.institution("DZ-ORAN-TEST")


@pytest.fixture
async def radiologist(factory: Factory, institution: Institution) -> dict[str, str]:
    return factory.headers(await factory.user(institution, Role.RADIOLOGIST))


async def test_three_good_instances_are_stored_and_referenced(
    client: httpx.AsyncClient,
    platform: Platform,
    institution: Institution,
    radiologist: dict[str, str],
) -> None:
    study, series = generate_uid(), generate_uid()
    files = [dicom.instance(study_uid=study, series_uid=series) for _ in range(3)]
    answer = await post(client, radiologist, *files)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/dicom+json")
    items = referenced(answer.json())
    assert len(items) == 3
    assert all(
        f"/dicomweb/studies/{study}/series/{series}/instances/" in i["00081190"]["Value"][0]
        for i in items
    )
    store = FileStore(originals(platform, institution))
    assert len(await store.instances(study)) == 3
    assert leftovers(platform) == []


async def test_each_bad_part_gets_its_own_reason_and_nothing_of_it_is_kept(
    client: httpx.AsyncClient,
    platform: Platform,
    institution: Institution,
    radiologist: dict[str, str],
) -> None:
    study, series = generate_uid(), generate_uid()
    good = dicom.instance(study_uid=study, series_uid=series)
    truncated = dicom.instance(study_uid=study, series_uid=series)[:-20]
    bad_uid = dicom.instance(study_uid=study, series_uid=series, sop_uid="1.2.3.999").replace(
        b"1.2.3.999", b"1.2.3.abc"
    )  # written as bytes: pydicom refuses to set an invalid UID
    answer = await post(client, radiologist, good, truncated, (PNG, "image/png"), bad_uid)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert len(referenced(body)) == 1
    assert sorted(failures(body)) == sorted(
        [stow.CANNOT_UNDERSTAND, stow.NOT_DICOM, stow.DATASET_MISMATCH]
    )
    store = FileStore(originals(platform, institution))
    assert len(await store.instances(study)) == 1
    assert sorted(p.name for p in originals(platform, institution).iterdir()) == sorted(
        ["index.sqlite3", *(p.name for p in originals(platform, institution).glob("*.dcm"))]
    )
    assert len(list(originals(platform, institution).glob("*.dcm"))) == 1
    assert leftovers(platform) == []


async def test_a_png_sent_as_dicom_is_not_understood_as_dicom(
    client: httpx.AsyncClient, radiologist: dict[str, str]
) -> None:
    answer = await post(client, radiologist, PNG)
    assert answer.status_code == 409
    assert failures(answer.json()) == [stow.NOT_DICOM]


async def test_deep_sequence_nesting_is_refused_with_a_reason_not_a_500(
    client: httpx.AsyncClient, platform: Platform, radiologist: dict[str, str]
) -> None:
    answer = await post(client, radiologist, nested(200))
    assert answer.status_code == 409, answer.text
    assert failures(answer.json()) == [stow.OUT_OF_RESOURCES]
    assert leftovers(platform) == []


def declaring(study: str, **attributes: object) -> bytes:
    """A small image whose header declares other dimensions than its pixel data has."""
    ds = dicom.parse(dicom.instance(study_uid=study, series_uid=generate_uid()))
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


async def test_pixel_data_too_large_once_decoded_or_of_unreadable_size_is_refused(
    client: httpx.AsyncClient, platform: Platform, radiologist: dict[str, str]
) -> None:
    study = generate_uid()
    huge = declaring(study, Rows=65535, Columns=65535)  # 8.6 GB at 16 bits
    unreadable = declaring(study, NumberOfFrames="9999").replace(b"9999", b"many")
    fine = declaring(study, NumberOfFrames="1")

    answer = await post(client, radiologist, huge, fine, unreadable)

    assert answer.status_code == 202, answer.text
    assert failures(answer.json()) == [stow.OUT_OF_RESOURCES, stow.CANNOT_UNDERSTAND]
    assert len(referenced(answer.json())) == 1
    assert leftovers(platform) == []


async def test_moderate_nesting_is_stored(
    client: httpx.AsyncClient, radiologist: dict[str, str]
) -> None:
    answer = await post(client, radiologist, nested(5))
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("chunk", [7, 4096, 1 << 20])
async def test_parts_arriving_in_chunks_of_any_size_are_stored_byte_for_byte(
    client: httpx.AsyncClient,
    platform: Platform,
    institution: Institution,
    radiologist: dict[str, str],
    chunk: int,
) -> None:
    study, series = generate_uid(), generate_uid()
    files = [
        dicom.instance(study_uid=study, series_uid=series, rows=size, columns=size)
        for size in (4, 64, 16)
    ]
    body, content_type = multipart(files[0], (PNG, "image/png"), files[1], files[2])

    async def chunks() -> Any:  # a delimiter may straddle two chunks
        for start in range(0, len(body), chunk):
            yield body[start : start + chunk]

    answer = await client.post(
        "/dicomweb/studies", content=chunks(), headers={**radiologist, "Content-Type": content_type}
    )

    assert answer.status_code == 202, answer.text
    assert failures(answer.json()) == [stow.NOT_DICOM]
    store = FileStore(originals(platform, institution))
    for data in files:
        uid = str(dicom.parse(data).SOPInstanceUID)
        assert await store.get(uid) == dicom.zeroed(data)
    assert leftovers(platform) == []


async def test_the_stored_file_has_a_zeroed_preamble_and_a_name_from_no_data(
    client: httpx.AsyncClient,
    platform: Platform,
    institution: Institution,
    radiologist: dict[str, str],
) -> None:
    study, series = generate_uid(), generate_uid()
    sop = generate_uid()
    data = dicom.with_preamble(
        dicom.instance(study_uid=study, series_uid=series, sop_uid=sop, patient_name="Secret^Name"),
        b"MZ\x90\x00",
    )
    assert (await post(client, radiologist, data)).status_code == 200
    (path,) = originals(platform, institution).glob("*.dcm")
    assert path.read_bytes()[:128] == bytes(128)
    assert sop not in path.name and study not in path.name and "Secret" not in str(path)
    assert path.read_bytes() == dicom.zeroed(data)


async def test_a_second_upload_of_the_same_instance_warns_already_stored(
    client: httpx.AsyncClient, radiologist: dict[str, str]
) -> None:
    data = dicom.instance(study_uid=generate_uid(), series_uid=generate_uid())
    assert (await post(client, radiologist, data)).status_code == 200
    again = await post(client, radiologist, data)
    assert again.status_code == 202
    assert referenced(again.json())[0]["00081196"]["Value"] == [stow.WARNING_ALREADY_STORED]


async def test_storing_into_a_study_refuses_instances_of_another(
    client: httpx.AsyncClient, radiologist: dict[str, str]
) -> None:
    study = generate_uid()
    mine = dicom.instance(study_uid=study, series_uid=generate_uid())
    other = dicom.instance(study_uid=generate_uid(), series_uid=generate_uid())
    answer = await post(client, radiologist, mine, other, path=f"/dicomweb/studies/{study}")
    assert answer.status_code == 202
    assert failures(answer.json()) == [stow.DATASET_MISMATCH]
    assert len(referenced(answer.json())) == 1


async def test_a_body_over_the_limit_is_413_and_nothing_is_kept(
    client: httpx.AsyncClient,
    platform: Platform,
    institution: Institution,
    radiologist: dict[str, str],
) -> None:
    platform.settings.stow_max_bytes = 4096
    files = [
        dicom.instance(study_uid=generate_uid(), series_uid=generate_uid(), rows=64, columns=64)
    ]
    body, content_type = multipart(*files)

    async def chunks() -> Any:  # no Content-Length: the limit is enforced while streaming
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    answer = await client.post(
        "/dicomweb/studies", content=chunks(), headers={**radiologist, "Content-Type": content_type}
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert not originals(platform, institution).exists() or not list(
        originals(platform, institution).glob("*.dcm")
    )
    assert leftovers(platform) == []
    declared = await post(client, radiologist, *files)
    assert declared.status_code == 413


async def test_a_wrong_content_type_is_415(
    client: httpx.AsyncClient, radiologist: dict[str, str]
) -> None:
    data = dicom.instance(study_uid=generate_uid(), series_uid=generate_uid())
    answer = await client.post(
        "/dicomweb/studies",
        content=data,
        headers={**radiologist, "Content-Type": "application/dicom"},
    )
    assert answer.status_code == 415
    body, _ = multipart(data)
    answer = await client.post(
        "/dicomweb/studies",
        content=body,
        headers={**radiologist, "Content-Type": 'multipart/related; type="image/png"; boundary=x'},
    )
    assert answer.status_code == 415


async def test_without_a_token_it_is_401(client: httpx.AsyncClient) -> None:
    body, content_type = multipart(
        dicom.instance(study_uid=generate_uid(), series_uid=generate_uid())
    )
    answer = await client.post(
        "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
    )
    assert answer.status_code == 401


async def test_a_specialist_may_not_store_and_the_refusal_is_audited(
    client: httpx.AsyncClient, platform: Platform, factory: Factory, institution: Institution
) -> None:
    specialist = await factory.user(institution, Role.SPECIALIST)
    data = dicom.instance(study_uid=generate_uid(), series_uid=generate_uid())
    answer = await post(client, factory.headers(specialist), data)
    assert answer.status_code == 403
    assert answer.json()["rule"] == "imaging_store_role"
    async with platform.database.transaction() as session:
        events = (await session.scalars(select(audit.AuditEvent))).all()
    assert [(e.action, e.outcome, e.actor_id) for e in events] == [
        ("imaging.store", "refused", specialist.id)
    ]


async def test_each_stored_study_is_audited_once(
    client: httpx.AsyncClient, platform: Platform, radiologist: dict[str, str]
) -> None:
    study = generate_uid()
    files = [dicom.instance(study_uid=study, series_uid=generate_uid()) for _ in range(2)]
    assert (await post(client, radiologist, *files)).status_code == 200
    async with platform.database.transaction() as session:
        events = (await session.scalars(select(audit.AuditEvent))).all()
    assert [(e.action, e.resource_id) for e in events] == [("imaging.store", study)]


async def test_instances_go_to_the_institutions_orthanc(
    client: httpx.AsyncClient,
    platform: Platform,
    factory: Factory,
    orthanc: OrthancServer,
) -> None:
    from tests.imaging.conftest import empty

    await empty(orthanc)
    institution = await factory.institution("DZ-SETIF-TEST")
    async with platform.database.transaction() as session:
        row = await session.get(Institution, institution.id)
        assert row is not None
        row.imaging_store = orthanc.url
    platform.settings.orthanc_username = orthanc.username
    platform.settings.orthanc_password = orthanc.password
    coordinator = factory.headers(await factory.user(institution, Role.COORDINATOR))
    study = generate_uid()
    files = [dicom.instance(study_uid=study, series_uid=generate_uid()) for _ in range(2)]
    answer = await post(client, coordinator, *files, (PNG, "image/png"))
    assert answer.status_code == 202, answer.text
    async with orthanc.store() as store:
        assert len(await store.instances(study)) == 2


async def spooled(
    folder: Path, *files: bytes, then: Callable[[], Awaitable[None]] | None = None
) -> AsyncIterator[stow.Part]:
    """Parts as `spool` yields them: one after another in one file; `then` runs after the
    last (a body that breaks there raises from it)."""
    path = folder / "body.bin"
    path.write_bytes(b"".join(files))
    offset = 0
    for data in files:
        yield stow.Part(path, stow.DICOM, offset=offset, size=len(data))
        offset += len(data)
    if then is not None:
        await then()


@pytest.mark.parametrize("in_flight", [1, 2, 3])
async def test_windows_in_flight_keep_the_first_copy_and_answer_in_the_parts_order(
    store: Store, tmp_path: Path, in_flight: int
) -> None:
    study, series = generate_uid(), generate_uid()
    first = dicom.instance(study_uid=study, series_uid=series, study_description="first")
    uid = str(dicom.parse(first).SOPInstanceUID)
    again = dicom.instance(study_uid=study, series_uid=series, sop_uid=uid, study_description="2")
    others = [dicom.instance(study_uid=study, series_uid=series) for _ in range(5)]
    files = [others[0], first, again, others[1], PNG, others[2], others[3], others[4]]
    outcome = stow.Outcome()

    await stow.store_parts(store, spooled(tmp_path, *files), outcome, window=1, in_flight=in_flight)

    assert [f[2] for f in outcome.failed] == [stow.NOT_DICOM]
    dicoms = [data for data in files if data != PNG]
    assert [s.sop_instance_uid for s in outcome.stored] == [
        str(dicom.parse(data).SOPInstanceUID) for data in dicoms
    ]
    assert [s.already_stored for s in outcome.stored] == [data is again for data in dicoms]
    assert await store.get(uid) == dicom.zeroed(first)
    assert len(await store.instances(study)) == 6


class Recording:
    """A real store that notes the size of each batch it is handed, and when one is kept."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.batches: list[int] = []
        self.kept = asyncio.Event()

    async def put_checked(self, parts: Any) -> Any:
        self.batches.append(len(parts))
        try:
            return await self.store.put_checked(parts)
        finally:
            self.kept.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_an_idle_store_gets_the_first_checked_part_without_waiting_for_a_window(
    file_store: FileStore, tmp_path: Path
) -> None:
    study, series = generate_uid(), generate_uid()
    files = [dicom.instance(study_uid=study, series_uid=series) for _ in range(12)]
    recording = Recording(file_store)
    outcome = stow.Outcome()

    await stow.store_parts(recording, spooled(tmp_path, *files), outcome, window=8)

    assert recording.batches[0] == 1
    assert sum(recording.batches) == 12
    assert max(recording.batches) <= 8
    assert [s.already_stored for s in outcome.stored] == [False] * 12
    assert len(await file_store.instances(study)) == 12


async def test_a_window_closes_at_its_size_in_bytes_too(
    file_store: FileStore, tmp_path: Path
) -> None:
    study, series = generate_uid(), generate_uid()
    files = [
        dicom.instance(study_uid=study, series_uid=series, rows=32, columns=32) for _ in range(6)
    ]
    recording = Recording(file_store)
    outcome = stow.Outcome()

    await stow.store_parts(
        recording,
        spooled(tmp_path, *files),
        outcome,
        window=8,
        window_bytes=2 * len(files[0]),
    )

    assert max(recording.batches) <= 2
    assert sum(recording.batches) == 6
    assert len(outcome.stored) == 6


async def _broken() -> None:
    raise BadRequest("the multipart body ends before its closing boundary")


async def test_a_body_that_breaks_after_parts_were_stored_takes_them_back(
    store: Store, tmp_path: Path
) -> None:
    """Parts are stored while the body arrives: when it then breaks, nothing of it stays,
    but what was in the store before (a second copy sent of it is not taken back)."""
    study, series = generate_uid(), generate_uid()
    before = dicom.instance(study_uid=study, series_uid=series)
    await store.put(before)
    files = [dicom.instance(study_uid=study, series_uid=series) for _ in range(5)]
    outcome = stow.Outcome()

    with pytest.raises(BadRequest):
        await stow.store_parts(
            store, spooled(tmp_path, *files, before, then=_broken), outcome, window=2
        )

    assert outcome.stored == [] and outcome.failed == []
    assert [i.sop_instance_uid for i in await store.instances(study)] == [
        str(dicom.parse(before).SOPInstanceUID)
    ]


async def test_an_instance_another_request_was_told_is_stored_survives_the_undo(
    store: Store, tmp_path: Path
) -> None:
    study, series = generate_uid(), generate_uid()
    shared, own = (dicom.instance(study_uid=study, series_uid=series) for _ in range(2))
    recording, second_answered = Recording(store), asyncio.Event()

    async def breaks_later() -> None:
        await second_answered.wait()
        raise BadRequest("the client went away")

    async def first() -> None:
        await stow.store_parts(
            recording,
            spooled(tmp_path / "a", shared, own, then=breaks_later),
            stow.Outcome(),
            window=1,
        )

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    broken = asyncio.create_task(first())
    await recording.kept.wait()
    second = stow.Outcome()
    await stow.store_parts(store, spooled(tmp_path / "b", shared), second)
    second_answered.set()
    with pytest.raises(BadRequest):
        await broken

    assert [s.already_stored for s in second.stored] == [True]
    assert [i.sop_instance_uid for i in await store.instances(study)] == [
        str(dicom.parse(shared).SOPInstanceUID)
    ]


async def test_a_declared_body_is_stored_while_it_arrives_and_taken_back_if_it_breaks(
    client: httpx.AsyncClient,
    platform: Platform,
    institution: Institution,
    radiologist: dict[str, str],
) -> None:
    kept, series = generate_uid(), generate_uid()
    files = [dicom.instance(study_uid=kept, series_uid=series) for _ in range(3)]
    body, content_type = multipart(*files)
    cut = body.index(b"Content-Type", len(files[0]))  # the second part's header
    first_uid = str(dicom.parse(files[0]).SOPInstanceUID)
    seen_before_the_end: list[bool] = []

    async def stored_yet() -> bool:
        store = FileStore(originals(platform, institution))
        for _ in range(500):  # a deadline of about 5 s, not a timing assertion
            if originals(platform, institution).exists():
                with contextlib.suppress(NotFoundInStore):
                    await store.get(first_uid)
                    return True
            await asyncio.sleep(0.01)
        return False

    def sending(rest: bytes) -> Callable[[], AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            yield body[:cut]
            seen_before_the_end.append(await stored_yet())
            yield rest

        return chunks

    headers = {**radiologist, "Content-Type": content_type, "Content-Length": str(len(body))}
    whole = await client.post("/dicomweb/studies", content=sending(body[cut:])(), headers=headers)
    assert whole.status_code == 200, whole.text
    assert seen_before_the_end == [True]

    study = generate_uid()
    files = [dicom.instance(study_uid=study, series_uid=series) for _ in range(3)]
    body, content_type = multipart(*files)
    cut = body.index(b"Content-Type", len(files[0]))
    first_uid = str(dicom.parse(files[0]).SOPInstanceUID)
    broken = body[cut : -len(b"--\r\n") - 40]  # no closing boundary
    headers = {
        **radiologist,
        "Content-Type": content_type,
        "Content-Length": str(cut + len(broken)),
    }
    answer = await client.post("/dicomweb/studies", content=sending(broken)(), headers=headers)

    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert seen_before_the_end == [True, True]
    with pytest.raises(NotFoundInStore):
        await FileStore(originals(platform, institution)).instances(study)
    assert leftovers(platform) == []
    async with platform.database.transaction() as session:
        events = (await session.scalars(select(audit.AuditEvent))).all()
    assert [(e.action, e.resource_id) for e in events] == [("imaging.store", kept)]
