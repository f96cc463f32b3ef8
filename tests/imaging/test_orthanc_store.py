"""What only the Orthanc store promises: its failures are typed, and its DICOMweb plugin answers."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass

from services.imaging.stores import (
    OrthancStore,
    RejectedByStore,
    StoredInstance,
    StoreUnavailable,
    part10,
)
from tests.imaging.conftest import OrthancServer, free_port, running_orthanc
from tests.imaging.factories import Archive, bundled


async def every_call_is_unavailable(store: OrthancStore, match: str) -> None:
    archive = Archive()
    with pytest.raises(StoreUnavailable, match=match):
        await store.put(bundled("CT_small.dcm"))
    with pytest.raises(StoreUnavailable, match=match):
        await store.get("1.2.3.4")
    with pytest.raises(StoreUnavailable, match=match):
        await store.studies()
    with pytest.raises(StoreUnavailable, match=match):
        await store.metadata(archive.study_a)
    with pytest.raises(StoreUnavailable, match=match):
        [data async for data in store.study_files(archive.study_a)]
    health = await store.health()
    assert not health.available
    assert health.backend == "orthanc"


async def test_an_orthanc_on_a_closed_port_is_unavailable() -> None:
    async with OrthancStore(f"http://127.0.0.1:{free_port()}", "jisr", "secret") as store:
        await every_call_is_unavailable(store, "cannot be reached")


async def test_an_orthanc_that_stopped_is_unavailable(tmp_path: Path) -> None:
    with running_orthanc(tmp_path) as server:
        store = server.store()
        stored = await store.put(bundled("CT_small.dcm"))
        server.stop()

        try:
            with pytest.raises(StoreUnavailable):
                await store.get(stored.sop_instance_uid)
            await every_call_is_unavailable(store, "cannot be reached")
        finally:
            await store.aclose()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def test_an_orthanc_that_does_not_answer_in_time_is_unavailable(silent_port: int) -> None:
    async with OrthancStore(f"http://127.0.0.1:{silent_port}", timeout=0.2) as store:
        await every_call_is_unavailable(store, "did not answer in time")


async def test_wrong_credentials_make_orthanc_unavailable_not_empty(orthanc: OrthancServer) -> None:
    async with OrthancStore(orthanc.url, orthanc.username, "not-the-password") as store:
        await every_call_is_unavailable(store, "refused our credentials")


async def test_the_test_orthanc_refuses_anonymous_requests(orthanc: OrthancServer) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{orthanc.url}/system")).status_code == 401
        assert (await client.get(f"{orthanc.url}/dicom-web/studies")).status_code == 401


async def test_dicomweb_client_searches_orthanc_through_its_plugin(
    orthanc_store: OrthancStore, orthanc: OrthancServer
) -> None:
    archive = Archive()
    for data in archive.all():
        await orthanc_store.put(data)

    def search() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        session = create_session_from_user_pass(orthanc.username, orthanc.password)
        try:
            client = DICOMwebClient(f"{orthanc.url}/dicom-web", session=session)
            studies = client.search_for_studies(search_filters={"PatientID": "JISR-0001"})
            series = client.search_for_series(archive.study_a)
            return studies, series
        finally:
            session.close()

    studies, series = await asyncio.to_thread(search)

    assert [study["0020000D"]["Value"] for study in studies] == [[archive.study_a]]  # type: ignore[index]
    assert {s["0020000E"]["Value"][0] for s in series} == {  # type: ignore[index]
        archive.ct_series,
        archive.mr_series,
    }


# Not DICOM at all, and a DICOM file Orthanc fails on half-way: each is its own failure.
@pytest.mark.parametrize(
    "unreadable",
    [b"not DICOM at all" * 20, bytes(128) + b"DICM" + b"not a data set" * 20],
    ids=["not-dicom", "malformed"],
)
async def test_a_file_orthanc_refuses_in_a_batch_does_not_stop_the_others(
    orthanc_store: OrthancStore, unreadable: bytes
) -> None:
    archive = Archive()
    good = [part10.read(data) for data in archive.all()[:4]]
    # A part this process let through but Orthanc cannot read, between good ones.
    refused = dataclasses.replace(good[1], data=unreadable)
    parts = [good[0], refused, good[2], good[3]]

    results = await orthanc_store.put_checked(parts)

    assert isinstance(results[1], RejectedByStore)
    kept = [results[0], results[2], results[3]]
    assert all(isinstance(r, StoredInstance) and not r.already_stored for r in kept)
    assert [r.sop_instance_uid for r in kept if isinstance(r, StoredInstance)] == [
        good[0].sop_instance_uid,
        good[2].sop_instance_uid,
        good[3].sop_instance_uid,
    ]
    assert sum(study.instance_count for study in await orthanc_store.studies()) == 3


async def test_two_requests_storing_overlapping_instances_at_once_store_each_once(
    orthanc_store: OrthancStore, orthanc: OrthancServer
) -> None:
    files = Archive().all()
    parts = [part10.read(data) for data in files]
    half = len(parts) // 2

    # Two stores, as two STOW-RS requests open one each.
    async with orthanc.store() as other:
        results = await asyncio.gather(
            orthanc_store.put_checked(parts[: half + 1]), other.put_checked(parts[half - 1 :])
        )
    listed = await orthanc_store.studies()

    kept = [r for batch in results for r in batch]
    assert all(isinstance(r, StoredInstance) for r in kept)
    assert sum(not r.already_stored for r in kept if isinstance(r, StoredInstance)) == len(files)
    assert sum(study.instance_count for study in listed) == len(files)
