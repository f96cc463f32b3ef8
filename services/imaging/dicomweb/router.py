"""DICOMweb routes (PS3.18): STOW-RS into the caller's institution's originals store."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.imaging import locations
from services.imaging.dicomweb import qido, stow
from services.imaging.stores import part10
from shared import audit
from shared.identity.deps import Caller, CurrentUser, PlatformDep, Session, require
from shared.identity.models import Role
from shared.problems import NotFound, PayloadTooLarge
from shared.registry.models import Institution

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

STORERS = (Role.RADIOLOGIST, Role.REFERRING_PHYSICIAN, Role.COORDINATOR)
ACTION = "imaging.store"


@router.post("/studies", response_class=JSONResponse)
async def store_instances(
    request: Request, caller: CurrentUser, platform: PlatformDep, session: Session
) -> JSONResponse:
    """STOW-RS Store Instances (PS3.18 §10.5): `multipart/related; type="application/dicom"`.

    Answers a Store Instances Response in `application/dicom+json`: 200 when every
    instance was stored, 202 when some failed (or were already stored), 409 when
    none was; each failed part carries its own FailureReason.
    """
    return await _store(request, caller, platform, session, study_uid=None)


@router.post("/studies/{study}", response_class=JSONResponse)
async def store_study_instances(
    study: str, request: Request, caller: CurrentUser, platform: PlatformDep, session: Session
) -> JSONResponse:
    """STOW-RS into one study (PS3.18 §10.5): instances of any other study fail with 0xA900."""
    if not part10.is_uid(study):
        raise NotFound(f"no such study: {study!r:.80}")
    return await _store(request, caller, platform, session, study_uid=study)


async def _store(
    request: Request,
    caller: Caller,
    platform: PlatformDep,
    session: Session,
    *,
    study_uid: str | None,
) -> JSONResponse:
    require(caller, *STORERS, action=ACTION, rule="imaging_store_role")
    boundary = stow.boundary_of(request.headers.get("content-type"))
    settings = platform.settings
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.stow_max_bytes:
        raise PayloadTooLarge(f"the request body exceeds {settings.stow_max_bytes} bytes")
    institution = await session.get(Institution, caller.institution_id)
    if institution is None:
        raise NotFound("the caller's institution is unknown")
    spool_root = settings.data_dir / "tmp"
    spool_root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=spool_root, prefix="stow-"))
    outcome = stow.Outcome()
    try:
        parts = stow.arriving(
            stow.spool(request.stream(), boundary, folder, max_bytes=settings.stow_max_bytes),
            whole_first=not declared.isdigit(),  # else a 413 could come after something is kept
        )
        async with locations.originals(platform, institution) as store:
            await stow.store_parts(store, parts, outcome, study_uid=study_uid)
    finally:
        stow.remove(folder)
    for study in sorted({s.study_uid for s in outcome.stored if not s.already_stored}):
        instances = [s for s in outcome.stored if s.study_uid == study and not s.already_stored]
        await audit.record(
            session,
            caller.actor,
            ACTION,
            resource_type="study",
            resource_id=study,
            details={"instances": len(instances), "failed": len(outcome.failed)},
        )
    return JSONResponse(
        stow.response_body(outcome, qido.base_url(request)),
        status_code=stow.status_code(outcome),
        media_type=stow.DICOM_JSON,
    )
