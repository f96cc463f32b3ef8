"""The production store: Orthanc's REST API through pyorthanc, and its DICOMweb plugin.

Orthanc names resources by its own ids (hashes of the patient and the UIDs),
so a DICOM UID is first mapped with `POST /tools/lookup`. The REST API stores,
reads, lists and deletes (`/instances`, `/instances/{id}/file`, `/tools/find`,
`/studies/{id}/series`, `DELETE /studies/{id}`); the DICOMweb plugin answers
the two questions the REST API of Orthanc 1.10 cannot answer in one call:
instances with their SOP Class (QIDO-RS, PS3.18 §10.6) and study metadata
(WADO-RS, PS3.18 §10.4), and takes several new files in one request (STOW-RS,
PS3.18 §10.5).

The plugin must run with `"StudiesMetadata": "Full"` (its default): with
`"MainDicomTags"` it answers only the tags Orthanc indexes, without SOP Class
UID, Rows, Columns or anything else a viewer needs to draw.

Every failure is mapped to a `StoreError`: a refused connection or a timeout
to `StoreUnavailable`, 401/403 (our credentials) and 502-504 likewise, 404 to
`NotFoundInStore`, a refused upload to `RejectedByStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any

import httpx
import pyorthanc  # type: ignore[import-untyped]  # pyorthanc ships no py.typed marker

from services.imaging.stores import part10, query
from services.imaging.stores.base import (
    InstanceRef,
    Retrieval,
    SeriesSummary,
    StoredInstance,
    StoreHealth,
    StudySummary,
)
from services.imaging.stores.errors import (
    NotFoundInStore,
    RejectedByStore,
    StoreError,
    StoreUnavailable,
)

__all__ = ["OrthancStore"]

DICOM_JSON = "application/dicom+json"
_RETRIEVE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_UNAVAILABLE = frozenset({401, 403, 502, 503, 504})
_MULTIPART = "multipart/related"
_STOW_ANSWERS = frozenset({400, 409})
"""STOW-RS statuses whose Store Instances Response still says what was stored (PS3.18
§10.5.3): 400 when some part failed, 409 when none was stored."""


PREFETCH = 8
"""Files of a study read at once by `study_files`."""
_FIND_BATCH = 200
"""SOP Instance UIDs per `/tools/find` (about 13 kB of query)."""


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every store of the process: httpx builds a new one for each client
    unless given one, reading the CA bundle each time (about 40 ms), and a store (so a
    client) is opened per request."""
    return httpx.create_ssl_context()


class OrthancStore:
    """DICOM instances in an Orthanc server (see module docstring)."""

    backend = "orthanc"

    def __init__(
        self,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        dicomweb_root: str = "/dicom-web/",
        timeout: float = 30.0,
        concurrency: int = 8,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._dicomweb = f"{self.base_url}/{dicomweb_root.strip('/')}"
        self._client = pyorthanc.AsyncOrthanc(
            self.base_url,
            username=username,
            password=password,
            return_raw_response=True,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            # Orthanc gzips any answer when asked to (httpx asks by default): about 60 ms
            # of compression per 0.5 MB file, then as long to inflate. DICOM files hardly
            # shrink and loopback or a LAN needs no compression: ask for the bytes as they are.
            headers={"Accept-Encoding": "identity"},
            verify=_tls(),
        )
        self._concurrency = asyncio.Semaphore(concurrency)

    @property
    def address(self) -> str:
        return self.base_url

    async def __aenter__(self) -> OrthancStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    # -- writing ---------------------------------------------------------------------------

    async def put(self, data: bytes) -> StoredInstance:
        """Check the file as every store does, then store it as `put_checked` does."""
        part = await asyncio.to_thread(part10.read, data)
        (result,) = await self.put_checked([part])
        if isinstance(result, StoreError):
            raise result
        return result

    async def put_checked(
        self, parts: Sequence[part10.Part10]
    ) -> list[StoredInstance | StoreError]:
        """One `POST /tools/find` for the SOP Instance UIDs Orthanc already holds, then the
        new files together in one STOW-RS request to the DICOMweb plugin; the first file
        is kept.

        Orthanc names an instance by its patient and UIDs together, so the same
        SOP Instance UID under another Patient ID would be a second instance:
        hence the look-up first, and a UID sent twice in one call is uploaded
        once. The look-up decides what is new, so two calls of this process that
        share UIDs take turns (`_claimed`): the second finds what the first
        stored. (Two calls from two processes at the same moment can still both
        land a UID, or both call it new; the file store's lock is per process too.)
        """
        async with _claimed(self.base_url, {part.sop_instance_uid for part in parts}):
            return await self._put_checked(parts)

    async def _put_checked(
        self, parts: Sequence[part10.Part10]
    ) -> list[StoredInstance | StoreError]:
        results: list[StoredInstance | StoreError | None] = [None] * len(parts)
        try:
            held = await self._held([part.sop_instance_uid for part in parts])
        except StoreError as exc:
            return [exc] * len(parts)
        first: dict[str, int] = {}
        again: list[int] = []
        for i, part in enumerate(parts):
            uid = part.sop_instance_uid
            if uid in held:
                results[i] = part.stored(size=held[uid], already_stored=True)
            elif uid in first:
                again.append(i)
            else:
                first[uid] = i
        uploads = list(first.values())
        for i, result in zip(
            uploads, await self._upload_all([parts[i] for i in uploads]), strict=True
        ):
            results[i] = result
        retry: list[int] = []
        for i in again:
            kept = results[first[parts[i].sop_instance_uid]]
            if isinstance(kept, StoredInstance):
                results[i] = parts[i].stored(size=kept.size, already_stored=True)
            else:  # the first copy failed: this one may fare better
                retry.append(i)
        if retry:
            for i, result in zip(
                retry, await self._put_checked([parts[i] for i in retry]), strict=True
            ):
                results[i] = result
        return [result for result in results if result is not None]

    async def _held(self, sop_instance_uids: list[str]) -> dict[str, int]:
        """The file size of each of these instances that Orthanc holds."""
        held: dict[str, int] = {}
        for item in _list_of_objects(
            await self._find(sop_instance_uids, expand=True), "look up instances"
        ):
            held.setdefault(_tags(item).get("SOPInstanceUID", ""), _size_of(item))
        return held

    async def _find(self, sop_instance_uids: Iterable[str], *, expand: bool) -> list[Any]:
        """`POST /tools/find` of the instances with these UIDs, by list matching (PS3.4
        C.2.2.2.2: UIDs are digits and dots, so no wildcard can sneak in): their Orthanc
        ids, or with `expand` their descriptions."""
        found: list[Any] = []
        unique = sorted(set(sop_instance_uids))
        for start in range(0, len(unique), _FIND_BATCH):
            answer = await self._json(
                "look up instances",
                self._client.post_tools_find(
                    {
                        "Level": "Instance",
                        "Query": {"SOPInstanceUID": "\\".join(unique[start : start + _FIND_BATCH])},
                        "Expand": expand,
                    }
                ),
            )
            if not isinstance(answer, list):
                raise StoreError("Orthanc answered a look-up with something other than a list")
            found += answer
        return found

    async def _upload_all(
        self, parts: Sequence[part10.Part10]
    ) -> list[StoredInstance | StoreError]:
        """Upload files with distinct UIDs that the look-up did not find, in one STOW-RS
        request (PS3.18 §10.5) to the DICOMweb plugin: what its answer references was
        stored, anything else was refused. One request instead of one per file spares
        this process most of the HTTP work (measured: 0.2 s instead of 0.6 s for 200
        files), and multipart costs Orthanc less than a ZIP archive (0.85 s instead of
        1.05 s of Orthanc's time for the same 200 files)."""
        if len(parts) <= 1:
            return [await self._upload(part) for part in parts]
        boundary = secrets.token_hex(16)
        chunks = _multipart(boundary, [part.data for part in parts])
        try:
            async with self._concurrency:
                response = await self._send(
                    "store instances",
                    self._client.post(
                        f"{self._dicomweb}/studies",
                        content=_each(chunks),
                        headers={
                            "Content-Type": f'{_MULTIPART}; type="application/dicom"; '
                            f"boundary={boundary}",
                            "Content-Length": str(sum(len(chunk) for chunk in chunks)),
                            "Accept": DICOM_JSON,
                        },
                    ),
                    answers=_STOW_ANSWERS,
                )
            stored = _referenced(_decode(response, "store instances"))
        except StoreError as exc:
            return [exc] * len(parts)
        return [
            part.stored(size=len(part.data), already_stored=False)
            if part.sop_instance_uid in stored
            else RejectedByStore(
                f"Orthanc refused the file (STOW-RS answered {response.status_code})"
            )
            for part in parts
        ]

    async def _upload(self, part: part10.Part10) -> StoredInstance | StoreError:
        try:
            async with self._concurrency:
                answer = await self._object(
                    "store an instance",
                    self._client.post_instances(content=part.data),
                    rejects=True,
                )
            status = answer.get("Status")
            if status == "Success":
                return part.stored(size=len(part.data), already_stored=False)
            if status == "AlreadyStored":
                size = await self._size(_field(answer, "ID"))
                return part.stored(size=size, already_stored=True)
            raise StoreError(f"Orthanc answered an upload with status {status!r}")
        except StoreError as exc:
            return exc

    async def _size(self, instance_id: str) -> int:
        return _size_of(
            await self._object("read an instance", self._client.get_instances_id(instance_id))
        )

    async def delete_study(self, study_uid: str) -> None:
        """`DELETE /studies/{id}` for each Orthanc study with this UID (one per patient)."""
        for orthanc_id in await self._study_ids(study_uid):
            await self._send("delete a study", self._client.delete_studies_id(orthanc_id))

    async def remove(self, sop_instance_uids: Sequence[str]) -> None:
        """`DELETE /instances/{id}` for each instance with one of these UIDs; Orthanc drops a
        series or study left empty itself."""
        uids = [uid for uid in sop_instance_uids if part10.is_uid(uid)]
        for orthanc_id in await self._find(uids, expand=False):
            with contextlib.suppress(NotFoundInStore):  # gone meanwhile
                await self._send(
                    "delete an instance", self._client.delete_instances_id(str(orthanc_id))
                )

    # -- reading ---------------------------------------------------------------------------

    async def get(self, sop_instance_uid: str) -> bytes:
        """`GET /instances/{id}/file`: the stored file, byte for byte."""
        ids = await self._lookup(sop_instance_uid, "Instance")
        if not ids:
            raise NotFoundInStore(f"no instance {sop_instance_uid} in the store")
        response = await self._send("read a file", self._client.get_instances_id_file(ids[0]))
        return response.content

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
        """`POST /tools/find` at study level, then each study's series for the counts."""
        lookup: dict[str, str] = {}
        for tag, value in (
            ("StudyInstanceUID", study_uid),
            ("PatientID", patient_id),
            ("PatientName", patient_name),
            ("AccessionNumber", accession_number),
            ("ModalitiesInStudy", modality),
        ):
            if value:
                lookup[tag] = value
        if study_date:
            query.date_range(study_date)  # the same ValueError as the file store
            lookup["StudyDate"] = study_date
        found = await self._objects(
            "find studies",
            self._client.post_tools_find(
                {"Level": "Study", "Query": lookup, "Expand": True, "CaseSensitive": False}
            ),
        )
        by_uid: dict[str, list[dict[str, Any]]] = {}
        for study in found:
            by_uid.setdefault(_tags(study).get("StudyInstanceUID", ""), []).append(study)
        heads = sorted(
            (_study_head(uid, studies) for uid, studies in by_uid.items()), key=query.study_order
        )
        if limit is not None:
            heads = heads[:limit]
        return list(
            await asyncio.gather(
                *(self._count_study(head, by_uid[head.study_uid]) for head in heads)
            )
        )

    async def _count_study(self, head: StudySummary, studies: list[dict[str, Any]]) -> StudySummary:
        series = [item for study in studies for item in await self._series_of(_field(study, "ID"))]
        return StudySummary(
            study_uid=head.study_uid,
            patient_id=head.patient_id,
            patient_name=head.patient_name,
            study_date=head.study_date,
            accession_number=head.accession_number,
            study_description=head.study_description,
            modalities=tuple(sorted({_tags(s).get("Modality", "") for s in series} - {""})),
            series_count=len(series),
            instance_count=sum(len(s.get("Instances") or ()) for s in series),
        )

    async def series(self, study_uid: str) -> list[SeriesSummary]:
        """`GET /studies/{id}/series` for each Orthanc study with this UID."""
        found = []
        for orthanc_id in await self._study_ids(study_uid):
            for item in await self._series_of(orthanc_id):
                tags = _tags(item)
                found.append(
                    SeriesSummary(
                        study_uid=study_uid,
                        series_uid=tags.get("SeriesInstanceUID", ""),
                        modality=tags.get("Modality", ""),
                        series_number=_integer(tags.get("SeriesNumber")),
                        series_description=tags.get("SeriesDescription", ""),
                        instance_count=len(item.get("Instances") or ()),
                    )
                )
        return sorted(found, key=query.series_order)

    async def instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRef]:
        """QIDO-RS through the DICOMweb plugin: the REST API of 1.10 lists no SOP Class UID."""
        await self._study_ids(study_uid)
        path = f"/studies/{study_uid}"
        if series_uid is not None:
            path += f"/series/{part10.check_uid(series_uid)}"
        found = await self._dicomweb_json("search instances", path + "/instances")
        refs = [
            InstanceRef(
                study_uid=_value(item, "0020000D") or study_uid,
                series_uid=_value(item, "0020000E"),
                sop_instance_uid=_value(item, "00080018"),
                sop_class_uid=_value(item, "00080016"),
                instance_number=_integer(_value(item, "00200013")),
            )
            for item in found
        ]
        if not refs:
            raise NotFoundInStore(f"no series {series_uid} in study {study_uid} in the store")
        return sorted(refs, key=query.instance_order)

    async def study_files(self, study_uid: str) -> AsyncIterator[bytes]:
        """`GET /instances/{id}/file` for each instance, in `instances` order."""
        ordered: list[tuple[tuple[str, bool, int, str], str]] = []
        for orthanc_id in await self._study_ids(study_uid):
            series_uids = {
                _field(item, "ID"): _tags(item).get("SeriesInstanceUID", "")
                for item in await self._series_of(orthanc_id)
            }
            listed = await self._objects(
                "list instances", self._client.get_studies_id_instances(orthanc_id)
            )
            for item in listed:
                ref = InstanceRef(
                    study_uid=study_uid,
                    series_uid=series_uids.get(str(item.get("ParentSeries")), ""),
                    sop_instance_uid=_tags(item).get("SOPInstanceUID", ""),
                    sop_class_uid="",
                    instance_number=_integer(_tags(item).get("InstanceNumber")),
                )
                ordered.append((query.instance_order(ref), _field(item, "ID")))
        # Several files in flight at once, yielded in order: each response pays a fixed
        # round-trip stall on Orthanc's HTTP server, so requests one after another add up.
        pending: deque[asyncio.Task[bytes]] = deque()
        try:
            for _, instance_id in sorted(ordered):
                pending.append(asyncio.create_task(self._file(instance_id)))
                if len(pending) >= PREFETCH:
                    yield await pending.popleft()
            while pending:
                yield await pending.popleft()
        finally:
            for task in pending:
                task.cancel()

    async def retrieve(
        self, study_uid: str, series_uid: str | None = None, sop_instance_uid: str | None = None
    ) -> Retrieval:
        """WADO-RS `GET {root}/studies/{uid}[/series/{uid}[/instances/{uid}]]`, passed on as
        Orthanc streams it: the stored files byte for byte (`transfer-syntax=*`) in one answer,
        where the REST API would take a request per file. The plugin itself answers 404 for a
        series outside the study or an instance outside the series."""
        path = f"/studies/{part10.check_uid(study_uid)}"
        if series_uid is not None:
            path += f"/series/{part10.check_uid(series_uid)}"
            if sop_instance_uid is not None:
                path += f"/instances/{part10.check_uid(sop_instance_uid)}"
        request = self._client.build_request(
            "GET", self._dicomweb + path, headers={"Accept": _RETRIEVE_ACCEPT}
        )
        response = await self._send("retrieve", self._client.send(request, stream=True))
        media_type = response.headers.get("content-type", "")
        if not media_type.lower().startswith("multipart/related"):
            await response.aclose()
            raise StoreError(f"Orthanc answered a retrieve with {media_type!r:.80}")
        return Retrieval(media_type, response.aiter_raw(), response.aclose)

    async def _file(self, instance_id: str) -> bytes:
        async with self._concurrency:
            response = await self._send(
                "read a file", self._client.get_instances_id_file(instance_id)
            )
        return response.content

    async def metadata(self, study_uid: str) -> list[dict[str, Any]]:
        """WADO-RS `GET {root}/studies/{uid}/metadata`, with bulk data left out."""
        await self._study_ids(study_uid)
        found = await self._dicomweb_json("read metadata", f"/studies/{study_uid}/metadata")
        items = [query.without_bulk_data(item) for item in found]
        return sorted(items, key=_metadata_order)

    async def health(self) -> StoreHealth:
        """`GET /system` answers and the DICOMweb plugin is loaded."""
        try:
            system = await self._object("read the system", self._client.get_system())
            plugins = await self._json("list plugins", self._client.get_plugins())
        except StoreError as exc:
            return StoreHealth(self.backend, False, str(exc))
        version = system.get("Version", "?")
        if not isinstance(plugins, list) or "dicom-web" not in plugins:
            return StoreHealth(
                self.backend, False, f"Orthanc {version} without its DICOMweb plugin"
            )
        return StoreHealth(self.backend, True, f"Orthanc {version} with its DICOMweb plugin")

    # -- Orthanc ids ----------------------------------------------------------------------

    async def _lookup(self, uid: str, level: str) -> list[str]:
        """Orthanc ids of the resources of one level that carry this DICOM UID."""
        part10.check_uid(uid)
        found = await self._objects(
            "look up a UID", self._client.post(f"{self.base_url}/tools/lookup", content=uid)
        )
        return [_field(item, "ID") for item in found if item.get("Type") == level]

    async def _study_ids(self, study_uid: str) -> list[str]:
        ids = await self._lookup(study_uid, "Study")
        if not ids:
            raise NotFoundInStore(f"no study {study_uid} in the store")
        return ids

    async def _series_of(self, orthanc_study_id: str) -> list[dict[str, Any]]:
        async with self._concurrency:
            return await self._objects(
                "list series", self._client.get_studies_id_series(orthanc_study_id)
            )

    # -- HTTP ------------------------------------------------------------------------------

    async def _dicomweb_json(self, what: str, path: str) -> list[dict[str, Any]]:
        response = await self._send(
            what, self._client.get(self._dicomweb + path, headers={"Accept": DICOM_JSON})
        )
        if response.status_code == 204 or not response.content:
            return []
        return _list_of_objects(_decode(response, what), what)

    async def _json(self, what: str, request: Awaitable[Any], *, rejects: bool = False) -> Any:
        return _decode(await self._send(what, request, rejects=rejects), what)

    async def _object(
        self, what: str, request: Awaitable[Any], *, rejects: bool = False
    ) -> dict[str, Any]:
        found = await self._json(what, request, rejects=rejects)
        if not isinstance(found, dict):
            raise StoreError(f"Orthanc answered something other than an object ({what})")
        return found

    async def _objects(self, what: str, request: Awaitable[Any]) -> list[dict[str, Any]]:
        return _list_of_objects(await self._json(what, request), what)

    async def _send(
        self,
        what: str,
        request: Awaitable[Any],
        *,
        rejects: bool = False,
        answers: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """Await one request; map every way it can fail to a `StoreError`, except the
        statuses in `answers`, whose body says more."""
        try:
            response = await request
        except httpx.TimeoutException as exc:
            raise StoreUnavailable(f"Orthanc did not answer in time ({what})") from exc
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"Orthanc cannot be reached ({what}): {exc}") from exc
        except httpx.HTTPError as exc:
            raise StoreError(f"Orthanc request failed ({what}): {exc}") from exc
        if not isinstance(response, httpx.Response):
            raise StoreError(f"pyorthanc returned {type(response).__name__} ({what})")
        status = response.status_code
        if status < 300 or status in answers:
            return response
        try:
            await response.aread()  # a streamed answer: read its (short) error body, and close
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"Orthanc answered {status} and broke off ({what})") from exc
        detail = _orthanc_detail(response)
        if status == 404:
            raise NotFoundInStore(f"Orthanc has no such resource ({what})")
        if status in (401, 403):
            raise StoreUnavailable(f"Orthanc refused our credentials with {status} ({what})")
        if status in _UNAVAILABLE:
            raise StoreUnavailable(f"Orthanc answered {status} ({what}): {detail}")
        if rejects and status in (400, 413, 415):
            raise RejectedByStore(f"Orthanc refused the file: {detail}")
        raise StoreError(f"Orthanc answered {status} ({what}): {detail}")


def _multipart(boundary: str, files: Sequence[bytes]) -> list[bytes]:
    """A multipart/related body (RFC 2387) as chunks: the files are sent, not copied."""
    chunks: list[bytes] = []
    for data in files:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), data]
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return chunks


async def _each(chunks: Sequence[bytes]) -> AsyncIterator[bytes]:
    """Chunks as an async client sends them (a list would be taken as a blocking stream)."""
    for chunk in chunks:
        yield chunk


def _referenced(answer: Any) -> frozenset[str]:
    """The SOP Instance UIDs a Store Instances Response says were stored (PS3.18 Table
    10.5.3-3, Referenced SOP Sequence)."""
    sequence = answer.get("00081199") if isinstance(answer, dict) else None
    items = sequence.get("Value") if isinstance(sequence, dict) else None
    if not isinstance(items, list):
        return frozenset()
    return frozenset(_value(item, "00081155") for item in items if isinstance(item, dict))


_claims: dict[tuple[str, str], asyncio.Event] = {}


@contextlib.asynccontextmanager
async def _claimed(base_url: str, uids: Iterable[str]) -> AsyncIterator[None]:
    """Hold these SOP Instance UIDs of one Orthanc against every other call of this process
    until the block ends; wait first while any is held. All are taken at once, after
    waiting with none held, so two calls never wait on each other."""
    keys = {(base_url, uid) for uid in uids}
    while busy := [_claims[key] for key in keys if key in _claims]:
        await busy[0].wait()
    done = asyncio.Event()
    for key in keys:
        _claims[key] = done
    try:
        yield
    finally:
        for key in keys:
            del _claims[key]
        done.set()


def _decode(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise StoreError(f"Orthanc answered something that is not JSON ({what})") from exc


def _list_of_objects(found: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
        raise StoreError(f"Orthanc answered something other than a list of objects ({what})")
    return found


def _field(item: dict[str, Any], key: str) -> str:
    """A field Orthanc always sends (an id); its absence is a store error, not a KeyError."""
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise StoreError(f"Orthanc answered without {key!r}")
    return value


def _size_of(instance: dict[str, Any]) -> int:
    try:
        return int(instance["FileSize"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError("Orthanc did not say the size of an instance") from exc


def _tags(item: dict[str, Any], key: str = "MainDicomTags") -> dict[str, str]:
    tags = item.get(key)
    return tags if isinstance(tags, dict) else {}


def _orthanc_detail(response: httpx.Response) -> str:
    """Orthanc's own words for an error (`Details`, else `Message`), short."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("Details") or body.get("Message") or body)[:200]
    return str(body)[:200]


def _study_head(uid: str, studies: list[dict[str, Any]]) -> StudySummary:
    """A study's own attributes from its first Orthanc study; counts come later."""
    tags = _tags(studies[0])
    patient = _tags(studies[0], "PatientMainDicomTags")
    return StudySummary(
        study_uid=uid,
        patient_id=patient.get("PatientID", ""),
        patient_name=patient.get("PatientName", ""),
        study_date=tags.get("StudyDate", ""),
        accession_number=tags.get("AccessionNumber", ""),
        study_description=tags.get("StudyDescription", ""),
        modalities=(),
        series_count=0,
        instance_count=0,
    )


def _value(item: dict[str, Any], tag: str) -> str:
    """The first value of one element of a DICOM JSON data set, as text."""
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return str(values[0]) if isinstance(values, list) and values else ""


def _integer(value: object) -> int | None:
    try:
        return int(float(str(value))) if value not in (None, "") else None
    except ValueError:
        return None


def _metadata_order(item: dict[str, Any]) -> tuple[str, bool, int, str]:
    number = _integer(_value(item, "00200013"))
    return (_value(item, "0020000E"), number is None, number or 0, _value(item, "00080018"))
