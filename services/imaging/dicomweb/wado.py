"""WADO-RS for partners (PS3.18 §10.4): retrieve the de-identified studies shared with the caller.

Studies, series and instances come back as `multipart/related;
type="application/dicom"` (PS3.18 §8.7.3.1), the stored files byte for byte in
their stored transfer syntax; metadata as `application/dicom+json` (PS3.18
F.2) without bulk data. As for QIDO-RS, only the shared store answers and only
for the caller's ready shares; anything else is 404. Rendered frames are in
`rendered.py`; raw frames and bulk data resources are not offered yet.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.imaging.dicomweb.qido import DICOM_JSON, entitled_study
from services.imaging.locations import shared_copies
from services.imaging.stores import NotFoundInStore, Store
from shared.identity.deps import CurrentUser, PlatformDep, Session
from shared.platform import Platform
from shared.problems import JisrError, NotFound

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

_ACCEPTABLE = ("multipart/related", "multipart/*", "*/*")
_SERIES_UID = "0020000E"


class NotAcceptable(JisrError):
    """PS3.18 §8.7.5: the caller accepts no media type this resource can be sent as."""

    status, slug = 406, "not_acceptable"


def _check_accept(request: Request) -> None:
    accept = request.headers.get("accept", "").lower()
    if accept and not any(media in accept for media in _ACCEPTABLE):
        raise NotAcceptable('this resource is sent as multipart/related; type="application/dicom"')


async def _instance_uids(
    platform: Platform, study: str, series: str | None = None, instance: str | None = None
) -> list[str]:
    async with shared_copies(platform) as store:
        try:
            found = await store.instances(study, series)
        except NotFoundInStore as exc:
            raise NotFound("no such study or series") from exc
    uids = [ref.sop_instance_uid for ref in found]
    if instance is not None:
        if instance not in uids:
            raise NotFound("no such instance")
        return [instance]
    return uids


def _multipart(platform: Platform, uids: list[str] | None, study: str = "") -> StreamingResponse:
    """One part per instance, read from the shared store as the response is written.

    `uids` None means the whole study, read with the store's own study walk (one
    look-up for the study rather than one per instance).
    """
    boundary = secrets.token_hex(16)

    async def files(store: Store) -> AsyncIterator[bytes]:
        if uids is None:
            async for data in store.study_files(study):
                yield data
        else:
            for uid in uids:
                yield await store.get(uid)

    async def parts() -> AsyncIterator[bytes]:
        async with shared_copies(platform) as store:
            async for data in files(store):
                yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                yield data
                yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    media_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return StreamingResponse(parts(), media_type=media_type)


@router.get("/studies/{study}")
async def retrieve_study(
    study: str, request: Request, session: Session, caller: CurrentUser, platform: PlatformDep
) -> StreamingResponse:
    """WADO-RS Retrieve Study (PS3.18 §10.4.1): every instance of a shared study."""
    _check_accept(request)
    await entitled_study(session, caller, study)
    await _instance_uids(platform, study)  # 404 before the answer starts
    return _multipart(platform, None, study)


@router.get("/studies/{study}/series/{series}")
async def retrieve_series(
    study: str,
    series: str,
    request: Request,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
) -> StreamingResponse:
    """WADO-RS Retrieve Series (PS3.18 §10.4.1): every instance of one series of a shared study."""
    _check_accept(request)
    await entitled_study(session, caller, study)
    return _multipart(platform, await _instance_uids(platform, study, series))


@router.get("/studies/{study}/series/{series}/instances/{instance}")
async def retrieve_instance(
    study: str,
    series: str,
    instance: str,
    request: Request,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
) -> StreamingResponse:
    """WADO-RS Retrieve Instance (PS3.18 §10.4.1): one instance of a shared study."""
    _check_accept(request)
    await entitled_study(session, caller, study)
    return _multipart(platform, await _instance_uids(platform, study, series, instance))


async def _metadata(platform: Platform, study: str) -> list[dict[str, Any]]:
    async with shared_copies(platform) as store:
        try:
            return await store.metadata(study)
        except NotFoundInStore as exc:
            raise NotFound("no such study") from exc


@router.get("/studies/{study}/metadata", response_class=JSONResponse)
async def retrieve_study_metadata(
    study: str, session: Session, caller: CurrentUser, platform: PlatformDep
) -> JSONResponse:
    """WADO-RS Retrieve Study Metadata (PS3.18 §10.4.1.1.2), in the DICOM JSON model."""
    await entitled_study(session, caller, study)
    return JSONResponse(await _metadata(platform, study), media_type=DICOM_JSON)


@router.get("/studies/{study}/series/{series}/metadata", response_class=JSONResponse)
async def retrieve_series_metadata(
    study: str, series: str, session: Session, caller: CurrentUser, platform: PlatformDep
) -> JSONResponse:
    """WADO-RS Retrieve Series Metadata (PS3.18 §10.4.1.1.2), in the DICOM JSON model."""
    await entitled_study(session, caller, study)
    items = [
        item
        for item in await _metadata(platform, study)
        if series in (item.get(_SERIES_UID, {}).get("Value") or [])
    ]
    if not items:
        raise NotFound("no such series")
    return JSONResponse(items, media_type=DICOM_JSON)
