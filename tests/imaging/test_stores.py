"""One suite, two stores: what holds for the embedded file store holds for Orthanc."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import io

import pydicom.config
import pytest

import services.imaging.stores as stores
from services.imaging.stores import (
    NotFoundInStore,
    RejectedByStore,
    Store,
    StoredInstance,
    StoreError,
    part10,
)
from tests.imaging.factories import (
    Archive,
    arabic,
    bundled,
    instance,
    parse,
    with_preamble,
    zeroed,
)

# pydicom's bundled files: CT and MR images, a 15-frame RT Dose, a JPEG 2000 and a
# two-frame RLE secondary capture, a structured report.
VARIED = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtdose.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle_2frame.dcm",
    "test-SR.dcm",
]


async def put_all(store: Store, files: list[bytes]) -> None:
    for data in files:
        await store.put(data)


def test_the_public_surface_is_the_interface_two_stores_and_their_errors() -> None:
    assert sorted(stores.__all__) == sorted(
        [
            "FileStore",
            "InstanceRef",
            "NotFoundInStore",
            "OrthancStore",
            "RejectedByStore",
            "Retrieval",
            "SeriesSummary",
            "Store",
            "StoreError",
            "StoreHealth",
            "StoreUnavailable",
            "StoredInstance",
            "StudySummary",
        ]
    )
    assert all(issubclass(error, StoreError) for error in (NotFoundInStore, RejectedByStore))


async def test_each_store_is_a_store_and_can_serve(store: Store) -> None:
    assert isinstance(store, Store)
    health = await store.health()
    assert health.available, health.detail


@pytest.mark.parametrize("name", VARIED)
async def test_a_stored_file_reads_back_byte_for_byte_with_its_preamble_zeroed(
    store: Store, name: str
) -> None:
    original = bundled(name)
    sent = with_preamble(original, b"MZ\x90\x00 this preamble could be an executable")

    stored = await store.put(sent)
    back = await store.get(stored.sop_instance_uid)

    assert back == zeroed(original)
    assert back[:128] == bytes(128)
    with pydicom.config.disable_value_validation():  # rtdose.dcm has a UID with a leading 0
        assert parse(back) == parse(original)
    expected = parse(original)
    assert (stored.study_uid, stored.series_uid, stored.sop_instance_uid, stored.sop_class_uid) == (
        expected.StudyInstanceUID,
        expected.SeriesInstanceUID,
        expected.SOPInstanceUID,
        expected.SOPClassUID,
    )
    assert stored.size == len(original)
    assert not stored.already_stored


def resent_under_another_patient(archive: Archive) -> bytes:
    """Study B's instance resent with other content under another Patient ID (which
    Orthanc on its own would keep as a second instance)."""
    return instance(
        study_uid=archive.study_b,
        series_uid=archive.b_series,
        sop_uid=parse(archive.files[archive.b_series][0]).SOPInstanceUID,
        patient_id="JISR-9999",
        study_description="Changed on resend",
        rows=8,
    )


async def test_storing_the_same_instance_twice_keeps_one_the_first(store: Store) -> None:
    archive = Archive()
    first = archive.files[archive.b_series][0]
    resent = resent_under_another_patient(archive)

    stored = await store.put(first)
    twice = await store.put(first)
    changed = await store.put(resent)

    assert not stored.already_stored
    assert twice.already_stored and changed.already_stored
    assert twice.size == changed.size == stored.size == len(first)
    assert await store.get(stored.sop_instance_uid) == first
    (study,) = await store.studies()
    assert (study.series_count, study.instance_count) == (1, 1)
    assert study.study_description == "Abdomen"


async def test_checked_files_put_together_keep_the_first_of_each_uid_and_answer_in_order(
    store: Store,
) -> None:
    archive = Archive()
    ct = archive.files[archive.ct_series]
    first = archive.files[archive.b_series][0]
    resent = resent_under_another_patient(archive)
    await store.put(ct[0])  # already there before the batch

    results = await store.put_checked(
        [part10.read(data) for data in (ct[0], first, ct[1], resent, ct[2], ct[1])]
    )

    kept = [r for r in results if isinstance(r, StoredInstance)]
    assert len(kept) == len(results) == 6
    assert [r.already_stored for r in kept] == [True, False, False, True, False, True]
    assert [r.sop_instance_uid for r in kept] == [
        str(parse(d).SOPInstanceUID) for d in (ct[0], first, ct[1], resent, ct[2], ct[1])
    ]
    assert kept[3].size == len(first)
    assert await store.get(kept[1].sop_instance_uid) == first
    assert sum(study.instance_count for study in await store.studies()) == 4


async def test_studies_are_listed_newest_first_with_patient_accession_modalities_and_counts(
    store: Store,
) -> None:
    archive = Archive()
    await put_all(store, archive.all())

    a, b = await store.studies()

    assert (a.study_uid, b.study_uid) == (archive.study_a, archive.study_b)
    assert (a.patient_id, a.patient_name, a.study_date, a.accession_number) == (
        "JISR-0001",
        "Doe^Jane",
        "20240105",
        "ACC-A",
    )
    assert a.study_description == "Chest"
    assert a.modalities == ("CT", "MR")
    assert (a.series_count, a.instance_count) == (2, 5)
    assert (b.patient_name, b.modalities, b.series_count, b.instance_count) == (
        "Benali^Ahmed",
        ("CT",),
        1,
        1,
    )


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["a", "b"]),
        ({"patient_name": "doe^jane"}, ["a"]),
        ({"patient_name": "BENALI*"}, ["b"]),
        ({"patient_name": "*a?e*"}, ["a"]),
        ({"patient_id": "JISR-0002"}, ["b"]),
        ({"patient_id": "JISR-*"}, ["a", "b"]),
        ({"accession_number": "ACC-A"}, ["a"]),
        ({"study_date": "20170320"}, ["b"]),
        ({"study_date": "20200101-"}, ["a"]),
        ({"study_date": "-20200101"}, ["b"]),
        ({"study_date": "20170101-20241231"}, ["a", "b"]),
        ({"modality": "MR"}, ["a"]),
        ({"modality": "CT"}, ["a", "b"]),
        ({"modality": "US"}, []),
        ({"patient_name": "Nobody*"}, []),
        ({"patient_id": "JISR-0001", "accession_number": "ACC-B"}, []),
        ({"limit": 1}, ["a"]),
    ],
)
async def test_studies_are_found_by_c_find_matching(
    store: Store, filters: dict[str, str], expected: list[str]
) -> None:
    archive = Archive()
    await put_all(store, archive.all())
    names = {archive.study_a: "a", archive.study_b: "b"}

    found = await store.studies(**filters)  # type: ignore[arg-type]

    assert [names[study.study_uid] for study in found] == expected


async def test_a_study_is_found_by_its_uid_and_a_bad_date_filter_is_refused(store: Store) -> None:
    archive = Archive()
    await put_all(store, archive.all())

    (study,) = await store.studies(study_uid=archive.study_b)

    assert study.study_uid == archive.study_b
    with pytest.raises(ValueError, match="date"):
        await store.studies(study_date="last week")


async def test_the_series_of_a_study_come_in_series_number_order_with_instance_counts(
    store: Store,
) -> None:
    archive = Archive()
    await put_all(store, archive.all())

    ct, mr = await store.series(archive.study_a)

    assert (ct.series_uid, ct.modality, ct.series_number, ct.instance_count) == (
        archive.ct_series,
        "CT",
        1,
        3,
    )
    assert (mr.series_uid, mr.modality, mr.series_description, mr.instance_count) == (
        archive.mr_series,
        "MR",
        "T1",
        2,
    )
    assert {ct.study_uid, mr.study_uid} == {archive.study_a}


async def test_instances_of_a_study_or_one_series_carry_their_sop_class_in_order(
    store: Store,
) -> None:
    archive = Archive()
    await put_all(store, archive.all())

    everything = await store.instances(archive.study_a)
    ct = await store.instances(archive.study_a, archive.ct_series)

    assert len(everything) == 5
    assert [i.instance_number for i in ct] == [1, 2, 3]
    assert {i.sop_class_uid for i in ct} == {"1.2.840.10008.5.1.4.1.1.2"}
    assert {i.series_uid for i in everything} == {archive.ct_series, archive.mr_series}
    expected = {parse(data).SOPInstanceUID for data in archive.of_study(archive.study_a)}
    assert {i.sop_instance_uid for i in everything} == expected
    assert everything == sorted(everything, key=lambda i: (i.series_uid, i.instance_number))


async def test_metadata_is_dicom_json_with_what_a_viewer_needs_and_no_bulk_data(
    store: Store,
) -> None:
    archive = Archive()
    await put_all(store, archive.all())
    await store.put(bundled("CT_small.dcm"))

    items = await store.metadata(archive.study_a)

    assert len(items) == 5
    by_uid = {item["00080018"]["Value"][0]: item for item in items}
    assert set(by_uid) == {parse(data).SOPInstanceUID for data in archive.of_study(archive.study_a)}
    for item in items:
        assert item["0020000D"] == {"vr": "UI", "Value": [archive.study_a]}
        assert item["00080016"]["Value"][0] in {
            "1.2.840.10008.5.1.4.1.1.2",
            "1.2.840.10008.5.1.4.1.1.4",
        }
        assert item["00100010"]["Value"] == [{"Alphabetic": "Doe^Jane"}]
        assert (item["00280010"]["Value"], item["00280011"]["Value"]) == ([4], [4])
        assert item["00280100"] == {"vr": "US", "Value": [16]}
        assert "7FE00010" not in item
        assert not any(tag.startswith("0002") for tag in item)
        assert all(set(element) <= {"vr", "Value"} for element in item.values())
    ct = await store.metadata(parse(bundled("CT_small.dcm")).StudyInstanceUID)
    (only,) = ct
    assert "7FE00010" not in only and "FFFCFFFC" not in only
    assert only["00431029"] == {"vr": "OB"}  # a private binary value: present, emptied


async def test_study_files_yield_every_instance_of_the_study_and_no_other(store: Store) -> None:
    archive = Archive()
    await put_all(store, archive.all())

    files = [data async for data in store.study_files(archive.study_a)]

    assert sorted(files) == sorted(archive.of_study(archive.study_a))


def multipart_files(media_type: str, body: bytes) -> list[bytes]:
    head = f"Content-Type: {media_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = list(message.iter_parts())
    assert all(part.get_content_type() == "application/dicom" for part in parts)
    payloads = [part.get_payload(decode=True) for part in parts]
    assert all(isinstance(payload, bytes) for payload in payloads)
    return [payload for payload in payloads if isinstance(payload, bytes)]


async def retrieved(
    store: Store, study: str, series: str | None = None, instance: str | None = None
) -> list[bytes]:
    answer = await store.retrieve(study, series, instance)
    try:
        body = b"".join([chunk async for chunk in answer.chunks])
    finally:
        await answer.aclose()
    assert answer.media_type.startswith('multipart/related; type="application/dicom"')
    return multipart_files(answer.media_type, body)


async def test_retrieve_streams_a_study_a_series_or_an_instance_byte_for_byte(
    store: Store,
) -> None:
    archive = Archive()
    await put_all(store, archive.all())
    first = archive.files[archive.mr_series][0]
    uid = str(parse(first).SOPInstanceUID)

    study = await retrieved(store, archive.study_a)
    series = await retrieved(store, archive.study_a, archive.mr_series)
    one = await retrieved(store, archive.study_a, archive.mr_series, uid)

    assert sorted(study) == sorted(archive.of_study(archive.study_a))
    assert sorted(series) == sorted(archive.files[archive.mr_series])
    assert one == [first]


async def test_retrieve_refuses_a_series_or_instance_outside_the_study_it_names(
    store: Store,
) -> None:
    archive = Archive()
    await put_all(store, archive.all())
    other = str(parse(archive.files[archive.b_series][0]).SOPInstanceUID)

    for asked in (
        (archive.study_a, archive.b_series),  # study B's series under study A
        (archive.study_a, archive.ct_series, other),  # study B's instance under A's series
        ("1.2.826.0.1.3680043.8.498.1",),
        ("../../etc/passwd",),
    ):
        with pytest.raises(NotFoundInStore):
            await store.retrieve(*asked)


async def test_a_deleted_study_is_gone_and_the_other_study_stays(store: Store) -> None:
    archive = Archive()
    await put_all(store, archive.all())
    gone = parse(archive.files[archive.ct_series][0]).SOPInstanceUID

    await store.delete_study(archive.study_a)

    assert [study.study_uid for study in await store.studies()] == [archive.study_b]
    with pytest.raises(NotFoundInStore):
        await store.get(gone)
    with pytest.raises(NotFoundInStore):
        await store.series(archive.study_a)
    with pytest.raises(NotFoundInStore):
        await store.delete_study(archive.study_a)
    assert len(await store.instances(archive.study_b)) == 1
    stored = await store.put(archive.files[archive.ct_series][0])
    assert not stored.already_stored  # deleted means it can come back


async def test_removed_instances_are_gone_with_the_series_and_study_they_emptied(
    store: Store,
) -> None:
    archive = Archive()
    await put_all(store, archive.all())
    mr = [str(parse(data).SOPInstanceUID) for data in archive.files[archive.mr_series]]
    b = [str(parse(data).SOPInstanceUID) for data in archive.files[archive.b_series]]
    ct_one = str(parse(archive.files[archive.ct_series][0]).SOPInstanceUID)

    await store.remove([*mr, *b, ct_one, "1.2.826.0.1.3680043.8.498.1", "../etc/passwd"])

    assert [study.study_uid for study in await store.studies()] == [archive.study_a]
    assert [series.series_uid for series in await store.series(archive.study_a)] == [
        archive.ct_series
    ]
    assert len(await store.instances(archive.study_a)) == 2
    for uid in (*mr, *b, ct_one):
        with pytest.raises(NotFoundInStore):
            await store.get(uid)
    stored = await store.put(archive.files[archive.b_series][0])
    assert not stored.already_stored  # removed means it can come back


@pytest.mark.parametrize(
    "uid", ["1.2.826.0.1.3680043.8.498.1", "../../etc/passwd", "1.2.3/../4", "", "1" * 65]
)
async def test_an_unknown_or_malformed_uid_is_not_found(store: Store, uid: str) -> None:
    await put_all(store, Archive().all())
    archive_series = (await store.studies())[0]

    with pytest.raises(NotFoundInStore):
        await store.get(uid)
    with pytest.raises(NotFoundInStore):
        await store.series(uid)
    with pytest.raises(NotFoundInStore):
        await store.instances(uid)
    with pytest.raises(NotFoundInStore):
        await store.instances(archive_series.study_uid, uid)
    with pytest.raises(NotFoundInStore):
        await store.metadata(uid)
    with pytest.raises(NotFoundInStore):
        await store.delete_study(uid)
    with pytest.raises(NotFoundInStore):
        [data async for data in store.study_files(uid)]


def _cut(name: str, keep: int) -> bytes:
    data = bundled(name)
    return data[: len(data) - keep]


def _without_sop_instance_uid() -> bytes:
    ds = parse(bundled("CT_small.dcm"))
    del ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


REJECTED = {
    "empty": (lambda: b"", "DICM"),
    "text": (lambda: b"this is not DICOM at all\n" * 10, "DICM"),
    "no preamble (a bare data set)": (lambda: bundled("no_meta.dcm"), "DICM"),
    "pydicom's truncated MR": (lambda: bundled("MR_truncated.dcm"), "cut short"),
    "pydicom's truncated RT plan": (lambda: bundled("rtplan_truncated.dcm"), "cut short"),
    "CT cut inside its pixel data": (lambda: _cut("CT_small.dcm", 1000), "cut short"),
    "CT cut inside an element header": (lambda: _cut("CT_small.dcm", 32773), "cut short"),
    "JPEG 2000 cut inside its fragments": (lambda: _cut("JPEG2000.dcm", 100), "cut short"),
    "only the preamble and DICM": (lambda: bytes(128) + b"DICM", "Transfer Syntax"),
    "no SOP Instance UID": (_without_sop_instance_uid, "SOPInstanceUID"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
async def test_garbage_and_truncated_files_are_rejected_with_a_reason_and_nothing_is_kept(
    store: Store, case: str
) -> None:
    make, reason = REJECTED[case]

    with pytest.raises(RejectedByStore) as refused:
        await store.put(make())

    assert reason in refused.value.reason
    assert await store.studies() == []


async def test_an_arabic_patient_name_is_listed_as_written(store: Store) -> None:
    await store.put(arabic())

    (study,) = await store.studies()

    assert study.patient_name == "قباني^لنزار"
    assert [s.study_uid for s in await store.studies(patient_name="قباني*")] == [study.study_uid]


async def test_concurrent_puts_of_overlapping_instances_keep_each_once(store: Store) -> None:
    archive = Archive()
    files = archive.all()

    results = await asyncio.gather(*(store.put(data) for data in files + files))

    assert sum(not result.already_stored for result in results) == len(files)
    assert sum(study.instance_count for study in await store.studies()) == len(files)


async def test_overlapping_batches_put_at_once_keep_each_instance_once(store: Store) -> None:
    files = Archive().all()
    parts = [part10.read(data) for data in files]
    half = len(parts) // 2

    results = await asyncio.gather(
        store.put_checked(parts[: half + 2]), store.put_checked(parts[half - 2 :])
    )

    kept = [r for batch in results for r in batch]
    assert all(isinstance(r, StoredInstance) for r in kept)
    assert sum(not r.already_stored for r in kept if isinstance(r, StoredInstance)) == len(files)
    assert sum(study.instance_count for study in await store.studies()) == len(files)
