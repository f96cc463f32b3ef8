"""The embedded store: DICOM files in one folder and an SQLite index beside them.

    root/
      index.sqlite3         studies, series, instances: what listings read
      <sha256 of SOP Instance UID>.dcm

A file's name is the hash of its SOP Instance UID and nothing else, so no
value in the data (a patient name, a UID) ever becomes part of a path. A file
is written to a temporary name in `root` and renamed into place
(`os.replace`, atomic on one file system), then indexed; the index is the
truth, so a crash between the two leaves at worst an unindexed file that the
next `put` of that instance overwrites. Writers in one process take an
`asyncio.Lock`; SQLite serialises writers across processes. File and index I/O
run in threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import closing
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import pydicom

from services.imaging.stores import multipart, part10, query
from services.imaging.stores.base import (
    InstanceRef,
    Retrieval,
    SeriesSummary,
    StoredInstance,
    StoreHealth,
    StudySummary,
)
from services.imaging.stores.errors import NotFoundInStore, StoreError, StoreUnavailable

__all__ = ["FileStore"]

T = TypeVar("T")

INDEX_NAME = "index.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    patient_name TEXT NOT NULL,
    study_date TEXT NOT NULL,
    accession_number TEXT NOT NULL,
    study_description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    modality TEXT NOT NULL,
    series_number INTEGER,
    series_description TEXT NOT NULL,
    PRIMARY KEY (study_uid, series_uid)
);
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    instance_number INTEGER,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_series ON instances (study_uid, series_uid);
"""
_STUDIES = (
    "SELECT st.study_uid, st.patient_id, st.patient_name, st.study_date,"
    " st.accession_number, st.study_description,"
    " (SELECT COUNT(*) FROM series se WHERE se.study_uid = st.study_uid),"
    " (SELECT COUNT(*) FROM instances i WHERE i.study_uid = st.study_uid)"
    " FROM studies st"
)


def file_name(sop_instance_uid: str) -> str:
    """The only name a stored file can have: nothing in it comes from the data."""
    return hashlib.sha256(sop_instance_uid.encode("ascii")).hexdigest() + ".dcm"


class FileStore:
    """DICOM instances as files under `root`, for the embedded default (see module docstring)."""

    backend = "files"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._index = self.root / INDEX_NAME
        self._lock = asyncio.Lock()
        self._ready = False

    @property
    def address(self) -> str:
        return str(self.root.resolve())

    async def __aenter__(self) -> FileStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Nothing stays open between calls."""

    # -- writing ---------------------------------------------------------------------------

    async def put(self, data: bytes) -> StoredInstance:
        """Keep one DICOM Part 10 file; the first file of a SOP Instance UID is the one kept."""
        part = await asyncio.to_thread(part10.read, data)
        await self._ensure_ready()
        async with self._lock:
            return await self._run(self._put, part)

    async def put_checked(
        self, parts: Sequence[part10.Part10]
    ) -> list[StoredInstance | StoreError]:
        """Keep checked files one after another (one disk, one index writer)."""
        await self._ensure_ready()
        results: list[StoredInstance | StoreError] = []
        for part in parts:
            try:
                async with self._lock:
                    results.append(await self._run(self._put, part))
            except StoreError as exc:
                results.append(exc)
        return results

    def _put(self, part: part10.Part10) -> StoredInstance:
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT size FROM instances WHERE sop_instance_uid = ?", (part.sop_instance_uid,)
            ).fetchone()
            if row is not None:
                return part.stored(size=row[0], already_stored=True)
            self._write_file(file_name(part.sop_instance_uid), part.data)
            with db:
                db.execute(
                    "INSERT OR IGNORE INTO studies VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        part.study_uid,
                        part.patient_id,
                        part.patient_name,
                        part.study_date,
                        part.accession_number,
                        part.study_description,
                    ),
                )
                db.execute(
                    "INSERT OR IGNORE INTO series VALUES (?, ?, ?, ?, ?)",
                    (
                        part.study_uid,
                        part.series_uid,
                        part.modality,
                        part.series_number,
                        part.series_description,
                    ),
                )
                db.execute(
                    "INSERT OR IGNORE INTO instances VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        part.sop_instance_uid,
                        part.study_uid,
                        part.series_uid,
                        part.sop_class_uid,
                        part.instance_number,
                        len(part.data),
                    ),
                )
        return part.stored(size=len(part.data), already_stored=False)

    def _write_file(self, name: str, data: bytes) -> None:
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=".incoming-", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.root / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    async def delete_study(self, study_uid: str) -> None:
        """Remove a study's index rows, then its files."""
        part10.check_uid(study_uid)
        await self._ensure_ready()
        async with self._lock:
            await self._run(self._delete_study, study_uid)

    def _delete_study(self, study_uid: str) -> None:
        with closing(self._connect()) as db, db:
            uids = [
                uid
                for (uid,) in db.execute(
                    "SELECT sop_instance_uid FROM instances WHERE study_uid = ?", (study_uid,)
                )
            ]
            if not uids:
                raise NotFoundInStore(f"no study {study_uid} in the store")
            for table in ("instances", "series", "studies"):
                db.execute(f"DELETE FROM {table} WHERE study_uid = ?", (study_uid,))  # noqa: S608
        for uid in uids:
            (self.root / file_name(uid)).unlink(missing_ok=True)

    async def remove(self, sop_instance_uids: Sequence[str]) -> None:
        """Index rows first, then files: a reader never finds a row without its file."""
        uids = [uid for uid in sop_instance_uids if part10.is_uid(uid)]
        if not uids:
            return
        await self._ensure_ready()
        async with self._lock:
            await self._run(self._remove, uids)

    def _remove(self, uids: list[str]) -> None:
        with closing(self._connect()) as db, db:
            places: set[tuple[str, str]] = set()
            removed: list[str] = []
            for uid in uids:
                row = db.execute(
                    "SELECT study_uid, series_uid FROM instances WHERE sop_instance_uid = ?",
                    (uid,),
                ).fetchone()
                if row is not None:
                    places.add((row[0], row[1]))
                    removed.append(uid)
                    db.execute("DELETE FROM instances WHERE sop_instance_uid = ?", (uid,))
            for study, series in places:
                db.execute(
                    "DELETE FROM series WHERE study_uid = ? AND series_uid = ? AND NOT EXISTS"
                    " (SELECT 1 FROM instances WHERE study_uid = ? AND series_uid = ?)",
                    (study, series, study, series),
                )
                db.execute(
                    "DELETE FROM studies WHERE study_uid = ? AND NOT EXISTS"
                    " (SELECT 1 FROM instances WHERE study_uid = ?)",
                    (study, study),
                )
        for uid in removed:
            (self.root / file_name(uid)).unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------

    async def get(self, sop_instance_uid: str) -> bytes:
        """The stored file of one instance."""
        part10.check_uid(sop_instance_uid)
        await self._ensure_ready()
        return await self._run(self._get, sop_instance_uid)

    def _get(self, sop_instance_uid: str) -> bytes:
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT 1 FROM instances WHERE sop_instance_uid = ?", (sop_instance_uid,)
            ).fetchone()
        if row is None:
            raise NotFoundInStore(f"no instance {sop_instance_uid} in the store")
        return self._read_file(sop_instance_uid)

    def _read_file(self, sop_instance_uid: str) -> bytes:
        try:
            return (self.root / file_name(sop_instance_uid)).read_bytes()
        except FileNotFoundError as exc:  # deleted while we looked
            raise NotFoundInStore(f"no instance {sop_instance_uid} in the store") from exc

    async def studies(
        self,
        *,
        study_uid: str | None = None,
        patient_id: str | None = None,
        patient_name: str | None = None,
        accession_number: str | None = None,
        study_date: str | None = None,
        modality: str | None = None,
        limit: int | None = None,
    ) -> list[StudySummary]:
        """Studies matching every filter given (see `Store.studies`)."""
        where: list[str] = []
        params: list[Any] = []
        if study_uid:
            where.append("st.study_uid = ?")
            params.append(study_uid)
        for column, pattern in (
            ("patient_id", patient_id),
            ("patient_name", patient_name),
            ("accession_number", accession_number),
        ):
            if pattern:
                where.append(f"jisr_match(?, st.{column})")
                params.append(pattern)
        if study_date:
            low, high = query.date_range(study_date)
            where.append("st.study_date BETWEEN ? AND ?")
            params.extend((low, high))
        if modality:
            where.append(
                "EXISTS (SELECT 1 FROM series se WHERE se.study_uid = st.study_uid"
                " AND upper(se.modality) = upper(?))"
            )
            params.append(modality)
        await self._ensure_ready()
        found = await self._run(self._studies, " AND ".join(where) or "1", params)
        found.sort(key=query.study_order)
        return found[:limit] if limit is not None else found

    def _studies(self, where: str, params: list[Any]) -> list[StudySummary]:
        with closing(self._connect()) as db:
            # `where` is built from our own fragments; every value is a parameter.
            sql = f"{_STUDIES} WHERE {where}"
            rows = db.execute(sql, params).fetchall()
            modalities: dict[str, set[str]] = {}
            for uid, value in db.execute("SELECT study_uid, modality FROM series"):
                if value:
                    modalities.setdefault(uid, set()).add(value)
        return [
            StudySummary(
                study_uid=row[0],
                patient_id=row[1],
                patient_name=row[2],
                study_date=row[3],
                accession_number=row[4],
                study_description=row[5],
                modalities=tuple(sorted(modalities.get(row[0], ()))),
                series_count=row[6],
                instance_count=row[7],
            )
            for row in rows
        ]

    async def series(self, study_uid: str) -> list[SeriesSummary]:
        """The series of one study."""
        part10.check_uid(study_uid)
        await self._ensure_ready()
        found = await self._run(self._series, study_uid)
        if not found:
            raise NotFoundInStore(f"no study {study_uid} in the store")
        return sorted(found, key=query.series_order)

    def _series(self, study_uid: str) -> list[SeriesSummary]:
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT se.series_uid, se.modality, se.series_number, se.series_description,"
                " (SELECT COUNT(*) FROM instances i"
                "  WHERE i.study_uid = se.study_uid AND i.series_uid = se.series_uid)"
                " FROM series se WHERE se.study_uid = ?",
                (study_uid,),
            ).fetchall()
        return [SeriesSummary(study_uid, *row) for row in rows]

    async def instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRef]:
        """The instances of one study, or of one of its series."""
        part10.check_uid(study_uid)
        if series_uid is not None:
            part10.check_uid(series_uid)
        await self._ensure_ready()
        found = await self._run(self._instances, study_uid, series_uid)
        if not found:
            what = f"series {series_uid} in study" if series_uid else "study"
            raise NotFoundInStore(f"no {what} {study_uid} in the store")
        return sorted(found, key=query.instance_order)

    def _instances(self, study_uid: str, series_uid: str | None) -> list[InstanceRef]:
        sql = (
            "SELECT study_uid, series_uid, sop_instance_uid, sop_class_uid, instance_number"
            " FROM instances WHERE study_uid = ?"
        )
        params = [study_uid]
        if series_uid is not None:
            sql += " AND series_uid = ?"
            params.append(series_uid)
        with closing(self._connect()) as db:
            return [InstanceRef(*row) for row in db.execute(sql, params)]

    async def study_files(self, study_uid: str) -> AsyncIterator[bytes]:
        """Every instance file of one study, read one at a time."""
        for instance in await self.instances(study_uid):
            yield await self._run(self._read_file, instance.sop_instance_uid)

    async def retrieve(
        self, study_uid: str, series_uid: str | None = None, sop_instance_uid: str | None = None
    ) -> Retrieval:
        """The files of a study, series or instance, framed as multipart by this process."""
        uids = [ref.sop_instance_uid for ref in await self.instances(study_uid, series_uid)]
        if sop_instance_uid is not None:
            if sop_instance_uid not in uids:
                raise NotFoundInStore(f"no instance {sop_instance_uid:.80} in that series")
            uids = [sop_instance_uid]

        async def files() -> AsyncIterator[bytes]:
            for uid in uids:
                yield await self._run(self._read_file, uid)

        return multipart.related(files())

    async def metadata(self, study_uid: str) -> list[dict[str, Any]]:
        """Each instance in DICOM JSON, read from its file up to the pixel data."""
        uids = [instance.sop_instance_uid for instance in await self.instances(study_uid)]
        return await self._run(self._metadata, uids)

    def _metadata(self, uids: Iterable[str]) -> list[dict[str, Any]]:
        items = []
        for uid in uids:
            try:
                ds = pydicom.dcmread(self.root / file_name(uid), stop_before_pixels=True)
            except FileNotFoundError as exc:
                raise NotFoundInStore(f"no instance {uid} in the store") from exc
            item = ds.to_json_dict(
                bulk_data_threshold=0,
                bulk_data_element_handler=_no_uri,
                suppress_invalid_tags=True,
            )
            items.append(query.without_bulk_data(item))
        return items

    async def health(self) -> StoreHealth:
        """The folder is writable and the index answers."""
        try:
            await self._ensure_ready()
            count = await self._run(self._count)
        except StoreError as exc:
            return StoreHealth(self.backend, False, str(exc))
        return StoreHealth(self.backend, True, f"index answers; {count} instances")

    def _count(self) -> int:
        if not os.access(self.root, os.W_OK):
            raise StoreUnavailable("the store's folder is not writable")
        with closing(self._connect()) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM instances").fetchone()
        return int(count)

    # -- plumbing --------------------------------------------------------------------------

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._lock:
            if not self._ready:
                await self._run(self._create)
                self._ready = True

    def _create(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._index, timeout=30)
        db.create_function("jisr_match", 2, _matches, deterministic=True)
        return db

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking I/O in a thread; OS and SQLite failures become store errors."""
        try:
            return await asyncio.to_thread(function, *args)
        except StoreError:
            raise
        except sqlite3.OperationalError as exc:  # locked, disk I/O error, cannot open
            raise StoreUnavailable(f"the store's index cannot be used: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"the store's index failed: {exc}") from exc
        except OSError as exc:  # disk full, permissions, missing folder
            raise StoreUnavailable(f"the store's folder cannot be used: {exc.strerror}") from exc


def _no_uri(element: pydicom.DataElement) -> str:
    return ""  # the value is dropped; the DICOMweb layer writes its own BulkDataURI


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str]:
    return query.wildcard(pattern)


def _matches(pattern: str, value: str | None) -> bool:
    return bool(_pattern(pattern).fullmatch(value or ""))
