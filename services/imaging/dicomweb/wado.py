"""WADO-RS for partners (PS3.18 §10.4): retrieve the de-identified studies shared with the caller.

Studies, series and instances come back as `multipart/related;
type="application/dicom"` (PS3.18 §8.7.3.1), the stored files byte for byte in
their stored transfer syntax, streamed on from the shared store's own answer
(Orthanc's DICOMweb plugin, or the file store's framing), or sent by nginx
straight from the shared Orthanc (`accel.py`, `JISR_IMAGING_ACCEL_REDIRECT`);
never cached (`no-store`). Metadata as `application/dicom+json` (PS3.18
F.2) without bulk data. As for QIDO-RS, only the shared store answers and only
for the caller's ready shares; anything else is 404. Rendered frames are in
`rendered.py`; raw frames and bulk data resources are not offered yet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from services.imaging.dicomweb import accel
from services.imaging.dicomweb.qido import DICOM_JSON, entitled_study
from services.imaging.locations import shared_copies
from services.imaging.stores import NotFoundInStore
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


async def _retrieve(
    request: Request,
    platform: Platform,
    study: str,
    series: str | None = None,
    instance: str | None = None,
) -> Response:
    """The shared Orthanc's answer sent by nginx when it is in front, else streamed here.

    Callers check the entitlement first: the shared store holds every partner's
    copies, so only the study UID tells them apart.
    """
    settings = platform.settings
    prefix = settings.imaging_accel_redirect
    if prefix is None or not settings.shared_store_url:
        return await _stream(platform, study, series, instance)
    accel.store_refusal(request)
    return accel.redirect(accel.target(prefix, study, series, instance))


async def _stream(
    platform: Platform, study: str, series: str | None, instance: str | None
) -> StreamingResponse:
    """The shared store's own multipart answer, streamed on as it is read.

    The store is opened here and closed when the answer has been sent (or the
    caller went away); a study, series or instance it does not hold is 404
    before the answer starts.
    """
    stack = AsyncExitStack()
    try:
        store = await stack.enter_async_context(shared_copies(platform))
        found = await store.retrieve(study, series, instance)
    except NotFoundInStore as exc:
        await stack.aclose()
        raise NotFound(accel.NOT_IN_STORE) from exc
    except BaseException:
        await stack.aclose()
        raise
    stack.push_async_callback(found.aclose)

    async def chunks() -> AsyncIterator[bytes]:
        async with stack:
            async for chunk in found.chunks:
                yield chunk

    return StreamingResponse(
        chunks(), media_type=found.media_type, headers={"Cache-Control": "no-store"}
    )


@router.get("/studies/{study}")
async def retrieve_study(
    study: str, request: Request, session: Session, caller: CurrentUser, platform: PlatformDep
) -> Response:
    """WADO-RS Retrieve Study (PS3.18 §10.4.1): every instance of a shared study."""
    _check_accept(request)
    await entitled_study(session, caller, study)
    return await _retrieve(request, platform, study)


@router.get("/studies/{study}/series/{series}")
async def retrieve_series(
    study: str,
    series: str,
    request: Request,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
) -> Response:
    """WADO-RS Retrieve Series (PS3.18 §10.4.1): every instance of one series of a shared study."""
    _check_accept(request)
    await entitled_study(session, caller, study)
    return await _retrieve(request, platform, study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}")
async def retrieve_instance(
    study: str,
    series: str,
    instance: str,
    request: Request,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
) -> Response:
    """WADO-RS Retrieve Instance (PS3.18 §10.4.1): one instance of a shared study."""
    _check_accept(request)
    await entitled_study(session, caller, study)
    return await _retrieve(request, platform, study, series, instance)


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
