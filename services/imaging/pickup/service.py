"""Studies that reach an institution's Orthanc over DICOM become known to the platform.

A modality or a PACS sends C-STORE straight to the institution's Orthanc; the
platform never sees those requests. `poll_stores` reads each Orthanc's change
log (`GET /changes?since=N&limit=100`) from the institution's cursor and, for
each `StableStudy` whose instances arrived over DICOM (instance metadata
`Origin` is `DicomProtocol`; STOW-RS uploads are `RestApi` and already audited
by the STOW-RS route), records an `imaging.store` audit event with
`{"via": "c-store", "study_uid": ...}`. A study is then in the institution's
store like any STOW-RS study, so it can be shared.

The audit events of one page of changes and the cursor move commit together:
a change is processed once, and a restart resumes after the last page
committed. An Orthanc that cannot be reached is logged and skipped; the other
institutions are still processed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from services.imaging.pickup.models import OrthancCursor
from services.imaging.stores import StoreError, StoreUnavailable
from shared import audit
from shared.db import utcnow
from shared.platform import Platform
from shared.registry.models import Institution

__all__ = ["ACTION", "TASK", "PollResult", "poll_institution", "poll_stores"]

log = logging.getLogger("jisr.imaging.pickup")

ACTION = "imaging.store"
TASK = "imaging.poll_stores_task"
PAGE = 100
MAX_PAGES = 50
"""Pages read per institution per run, so one busy store cannot hold the task for long."""
DICOM_ORIGIN = "DicomProtocol"


@dataclass
class PollResult:
    """What one run did: study UIDs recorded per institution code, and stores skipped."""

    recorded: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"recorded": self.recorded, "skipped": self.skipped}


@dataclass(frozen=True)
class _Study:
    study_uid: str
    instances: int
    calling_aets: tuple[str, ...]


async def poll_stores(platform: Platform) -> PollResult:
    """Read the change log of every institution with an Orthanc; never raises for a store."""
    async with platform.database.transaction() as session:
        rows = await session.scalars(
            select(Institution)
            .where(Institution.imaging_store.is_not(None))
            .order_by(Institution.id)
        )
        institutions = [(row.id, row.code, row.imaging_store or "") for row in rows]
    result = PollResult()
    for institution_id, code, url in institutions:
        if not url:
            continue
        try:
            result.recorded[code] = await poll_institution(platform, institution_id, url)
        except Exception as exc:  # one store's failure must not stop the others
            log.warning(
                "skipping the Orthanc of institution %s (%s): %s",
                code,
                url,
                exc,
                exc_info=not isinstance(exc, StoreError),
            )
            result.skipped[code] = str(exc)
    return result


async def poll_institution(platform: Platform, institution_id: int, url: str) -> list[str]:
    """Process this Orthanc's changes after the institution's cursor; the study UIDs recorded."""
    settings = platform.settings
    auth = (
        httpx.BasicAuth(settings.orthanc_username, settings.orthanc_password or "")
        if settings.orthanc_username
        else None
    )
    recorded: list[str] = []
    async with _Orthanc(url, auth) as orthanc:
        for _ in range(MAX_PAGES):
            async with platform.database.transaction() as session:
                cursor = await session.get(OrthancCursor, institution_id)
                since = cursor.last_change if cursor is not None else 0
            page = await orthanc.object(
                "read the change log", f"/changes?since={since}&limit={PAGE}"
            )
            changes = page.get("Changes") or []
            studies = []
            for change in changes:
                if change.get("ChangeType") == "StableStudy":
                    study = await _dicom_study(orthanc, str(change.get("ID", "")))
                    if study is not None:
                        studies.append(study)
            last = int(page.get("Last", since)) if changes else since
            async with platform.database.transaction() as session:
                cursor = await session.get(OrthancCursor, institution_id, with_for_update=True)
                if cursor is None:
                    cursor = OrthancCursor(institution_id=institution_id, last_change=0)
                    session.add(cursor)
                if cursor.last_change != since:  # another run moved it meanwhile
                    break
                actor = audit.Actor(username="system", institution_id=institution_id)
                for study in studies:
                    await audit.record(
                        session,
                        actor,
                        ACTION,
                        resource_type="study",
                        resource_id=study.study_uid,
                        details={
                            "via": "c-store",
                            "study_uid": study.study_uid,
                            "instances": study.instances,
                            "calling_aets": list(study.calling_aets),
                        },
                    )
                    recorded.append(study.study_uid)
                cursor.last_change = max(last, since)
                cursor.updated_at = utcnow()
            if page.get("Done", True) or not changes:
                break
    return recorded


async def _dicom_study(orthanc: _Orthanc, orthanc_id: str) -> _Study | None:
    """The study's UID and its instances received over DICOM; None if none were (or it is gone)."""
    study = await orthanc.object("read a study", f"/studies/{orthanc_id}", missing_ok=True)
    if not study:
        return None
    uid = str((study.get("MainDicomTags") or {}).get("StudyInstanceUID", ""))
    instances = await orthanc.json("list instances", f"/studies/{orthanc_id}/instances")
    count = 0
    aets: set[str] = set()
    for item in instances if isinstance(instances, list) else []:
        metadata = await orthanc.object(
            "read instance metadata",
            f"/instances/{item.get('ID', '')}/metadata?expand",
            missing_ok=True,
        )
        if metadata.get("Origin") == DICOM_ORIGIN:
            count += 1
            if metadata.get("RemoteAET"):
                aets.add(str(metadata["RemoteAET"]))
    if not uid or count == 0:
        return None
    return _Study(uid, count, tuple(sorted(aets)))


class _Orthanc:
    """The few REST calls the pick-up needs, with failures mapped to `StoreError`."""

    def __init__(self, url: str, auth: httpx.Auth | None) -> None:
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"), auth=auth, timeout=httpx.Timeout(30.0, connect=5.0)
        )

    async def __aenter__(self) -> _Orthanc:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()

    async def json(self, what: str, path: str, *, missing_ok: bool = False) -> Any:
        try:
            response = await self._client.get(path)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"Orthanc cannot be reached ({what}): {exc}") from exc
        except httpx.HTTPError as exc:
            raise StoreError(f"Orthanc request failed ({what}): {exc}") from exc
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code in (401, 403) or response.status_code >= 500:
            raise StoreUnavailable(f"Orthanc answered {response.status_code} ({what})")
        if response.status_code >= 300:
            raise StoreError(f"Orthanc answered {response.status_code} ({what})")
        try:
            return response.json()
        except ValueError as exc:
            raise StoreError(f"Orthanc answered something other than JSON ({what})") from exc

    async def object(self, what: str, path: str, *, missing_ok: bool = False) -> dict[str, Any]:
        found = await self.json(what, path, missing_ok=missing_ok)
        if found is None and missing_ok:
            return {}
        if not isinstance(found, dict):
            raise StoreError(f"Orthanc answered something other than an object ({what})")
        return found
