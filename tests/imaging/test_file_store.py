"""What only the file store promises: where its files go, and what it keeps on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.imaging.stores import FileStore, RejectedByStore, StoreUnavailable
from tests.imaging.factories import Archive, bundled, instance, parse

INDEX_FILES = {"index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"}


def tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


async def test_file_names_come_from_the_sop_instance_uid_hash_and_never_from_the_data(
    tmp_path: Path,
) -> None:
    hostile = instance(
        study_uid="1.2.826.0.1.3680043.8.498.10",
        series_uid="1.2.826.0.1.3680043.8.498.11",
        sop_uid="1.2.826.0.1.3680043.8.498.12",
        patient_name="../../etc/passwd",
        patient_id="../../../tmp/x",
        study_description="/etc/shadow",
        series_description="..\\\\..\\\\windows",
        accession_number="$(rm -rf /)",
    )
    store = FileStore(tmp_path / "store")

    await store.put(hostile)

    digest = hashlib.sha256(b"1.2.826.0.1.3680043.8.498.12").hexdigest()
    assert tree(tmp_path) - {f"store/{name}" for name in INDEX_FILES} == {
        "store",
        f"store/{digest}.dcm",
    }
    (study,) = await store.studies(patient_name="../../etc/passwd")
    assert study.patient_id == "../../../tmp/x"


async def test_a_store_opened_again_on_its_folder_finds_what_it_kept(tmp_path: Path) -> None:
    archive = Archive()
    first = FileStore(tmp_path / "store")
    for data in archive.all():
        await first.put(data)

    again = FileStore(tmp_path / "store")

    assert [study.study_uid for study in await again.studies()] == [
        archive.study_a,
        archive.study_b,
    ]
    assert (await again.put(archive.all()[0])).already_stored


async def test_a_refused_file_leaves_nothing_on_disk(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    await store.put(bundled("CT_small.dcm"))
    before = tree(tmp_path)

    for refused in (b"junk", bundled("MR_truncated.dcm"), bundled("CT_small.dcm")[:-10]):
        with pytest.raises(RejectedByStore):
            await store.put(refused)

    assert tree(tmp_path) == before


async def test_a_deleted_study_leaves_no_file_behind(tmp_path: Path) -> None:
    archive = Archive()
    store = FileStore(tmp_path / "store")
    for data in archive.all():
        await store.put(data)

    await store.delete_study(archive.study_a)
    await store.delete_study(archive.study_b)

    assert tree(tmp_path / "store") <= INDEX_FILES


async def test_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    stored = await store.put(bundled("MR_small.dcm"))

    path = (
        tmp_path / "store" / (hashlib.sha256(stored.sop_instance_uid.encode()).hexdigest() + ".dcm")
    )

    assert path.stat().st_mode & 0o077 == 0
    assert (tmp_path / "store").stat().st_mode & 0o077 == 0
    assert parse(path.read_bytes()).SOPInstanceUID == stored.sop_instance_uid


async def test_a_store_whose_folder_cannot_be_made_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    store = FileStore(tmp_path / "a-file" / "store")

    health = await store.health()
    with pytest.raises(StoreUnavailable):
        await store.put(bundled("CT_small.dcm"))

    assert not health.available
    assert "folder" in health.detail
