"""QIDO-RS for partners (PS3.18 §10.6): search the de-identified studies shared with the caller.

Every resource of Table 10.6.1-2 is here: `/studies`, `/studies/{study}/series`,
`/studies/{study}/series/{series}/instances`, `/studies/{study}/instances`,
`/series` and `/instances`. Answers come from the shared store only, and only
for studies of ready shares whose provider (or origin) is the caller's
institution: a search over all studies finds none of the others, a study the
caller may not read is 404, never 403, so that a UID's existence does not leak.
The query is checked first (`qido_params`): an invalid one is 400 whoever asks.
`limit` and `offset` page the result. Responses are `application/dicom+json`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.imaging.dicomweb.qido_params import Level, Search, parse
from services.imaging.locations import shared_copies
from services.imaging.shares import repository as shares
from services.imaging.stores import (
    InstanceRef,
    NotFoundInStore,
    SeriesSummary,
    Store,
    StudySummary,
)
from shared.identity.deps import Caller, CurrentUser, PlatformDep, Session
from shared.problems import NotFound

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

DICOM_JSON = "application/dicom+json"


async def entitled_study(session: Session, caller: Caller, study_uid: str) -> None:
    """404 unless the caller's institution may read this de-identified study."""
    if not await shares.may_read_study(
        session, institution_id=caller.institution_id, study_uid=study_uid
    ):
        raise NotFound("no such study")


def base_url(request: Request) -> str:
    """Where this DICOMweb service is, for Retrieve URL (0008,1190): `JISR_PUBLIC_URL` when
    set, else as the caller reached it."""
    public: str = request.app.state.platform.settings.public_url
    return f"{(public or str(request.base_url)).rstrip('/')}/dicomweb"


def _value(vr: str, value: Any) -> dict[str, Any]:
    if value is None or value == "" or value == ():
        return {"vr": vr}
    values = list(value) if isinstance(value, list | tuple) else [value]
    if vr == "PN":
        values = [{"Alphabetic": str(v)} for v in values]
    return {"vr": vr, "Value": values}


def study_json(study: StudySummary, base: str) -> dict[str, Any]:
    """One study as PS3.18 Table 10.6.3-3 lists its return attributes."""
    return {
        "00080005": _value("CS", "ISO_IR 192"),
        "00080020": _value("DA", study.study_date),
        "00080050": _value("SH", study.accession_number),
        "00080061": _value("CS", study.modalities),
        "00081030": _value("LO", study.study_description),
        "00081190": _value("UR", f"{base}/studies/{study.study_uid}"),
        "00100010": _value("PN", study.patient_name),
        "00100020": _value("LO", study.patient_id),
        "0020000D": _value("UI", study.study_uid),
        "00201206": _value("IS", study.series_count),
        "00201208": _value("IS", study.instance_count),
    }


def series_json(series: SeriesSummary, base: str) -> dict[str, Any]:
    """One series as PS3.18 Table 10.6.3-4 lists its return attributes."""
    return {
        "00080060": _value("CS", series.modality),
        "0008103E": _value("LO", series.series_description),
        "00081190": _value("UR", f"{base}/studies/{series.study_uid}/series/{series.series_uid}"),
        "0020000D": _value("UI", series.study_uid),
        "0020000E": _value("UI", series.series_uid),
        "00200011": _value("IS", series.series_number),
        "00201209": _value("IS", series.instance_count),
    }


def instance_json(instance: InstanceRef, base: str) -> dict[str, Any]:
    """One instance as PS3.18 Table 10.6.3-5 lists its return attributes."""
    url = (
        f"{base}/studies/{instance.study_uid}/series/{instance.series_uid}"
        f"/instances/{instance.sop_instance_uid}"
    )
    return {
        "00080016": _value("UI", instance.sop_class_uid),
        "00080018": _value("UI", instance.sop_instance_uid),
        "00081190": _value("UR", url),
        "0020000D": _value("UI", instance.study_uid),
        "0020000E": _value("UI", instance.series_uid),
        "00200013": _value("IS", instance.instance_number),
    }


def _page(items: list[Any], search: Search) -> list[Any]:
    end = search.offset + search.limit if search.limit is not None else None
    return items[search.offset : end]


def _answer(items: list[dict[str, Any]], search: Search, request: Request) -> JSONResponse:
    headers = {}
    if search.fuzzy:  # PS3.18 §8.3.4.1: say that only literal matching was done
        headers["Warning"] = (
            f'299 {request.url.netloc or "jisr"}: "The fuzzymatching parameter is not supported.'
            ' Only literal matching has been performed."'
        )
    return JSONResponse(items, media_type=DICOM_JSON, headers=headers)


def _search(request: Request, *levels: Level) -> Search:
    return parse(request.query_params.multi_items(), levels)


async def _studies(
    session: Session, caller: Caller, store: Store, search: Search
) -> list[StudySummary]:
    """The caller's visible studies that match the study keys, in the stores' order.

    The store narrows by the keys it matches itself; `matches_study` then applies
    every key (UID and modality lists, descriptions) alike on both stores."""
    visible = await shares.visible_study_uids(session, institution_id=caller.institution_id)
    wanted = search.uids("StudyInstanceUID")
    if wanted is not None:
        visible = visible & wanted
    if not visible:
        return []
    found = await store.studies(
        study_uid=next(iter(visible)) if len(visible) == 1 else None,
        patient_id=search.get("PatientID"),
        patient_name=search.get("PatientName"),
        accession_number=search.get("AccessionNumber"),
        study_date=search.get("StudyDate"),
        modality=search.single("ModalitiesInStudy"),
    )
    return [s for s in found if s.study_uid in visible and search.matches_study(s)]


async def _series(store: Store, study_uids: Iterable[str], search: Search) -> list[SeriesSummary]:
    """The matching series of these studies; a study the store no longer holds has none."""
    found: list[SeriesSummary] = []
    for uid in study_uids:
        try:
            found += [s for s in await store.series(uid) if search.matches_series(s)]
        except NotFoundInStore:
            continue
    return found


async def _instances_of(store: Store, study_uid: str, search: Search) -> list[InstanceRef]:
    """The matching instances of one study, within its matching series; NotFoundInStore if none."""
    found = await store.instances(study_uid)
    if search.asks(Level.SERIES):
        series = {s.series_uid for s in await store.series(study_uid) if search.matches_series(s)}
        found = [i for i in found if i.series_uid in series]
    return [i for i in found if search.matches_instance(i)]


async def _instances(store: Store, study_uids: Iterable[str], search: Search) -> list[InstanceRef]:
    """The matching instances of these studies; a study the store no longer holds has none."""
    found: list[InstanceRef] = []
    for uid in study_uids:
        try:
            found += await _instances_of(store, uid, search)
        except NotFoundInStore:
            continue
    return found


@router.get("/studies", response_class=JSONResponse)
async def search_studies(
    request: Request, session: Session, caller: CurrentUser, platform: PlatformDep
) -> JSONResponse:
    """QIDO-RS Search For Studies (PS3.18 §10.6.1) among the studies shared with the caller."""
    search = _search(request, Level.STUDY)
    async with shared_copies(platform) as store:
        found = await _studies(session, caller, store, search)
    base = base_url(request)
    return _answer([study_json(s, base) for s in _page(found, search)], search, request)


@router.get("/series", response_class=JSONResponse)
async def search_all_series(
    request: Request, session: Session, caller: CurrentUser, platform: PlatformDep
) -> JSONResponse:
    """QIDO-RS Search For Series (PS3.18 §10.6.1) of all the studies shared with the caller."""
    search = _search(request, Level.STUDY, Level.SERIES)
    async with shared_copies(platform) as store:
        studies = await _studies(session, caller, store, search)
        found = await _series(store, [s.study_uid for s in studies], search)
    base = base_url(request)
    return _answer([series_json(s, base) for s in _page(found, search)], search, request)


@router.get("/instances", response_class=JSONResponse)
async def search_all_instances(
    request: Request, session: Session, caller: CurrentUser, platform: PlatformDep
) -> JSONResponse:
    """QIDO-RS Search For Instances (PS3.18 §10.6.1) of all the studies shared with the caller."""
    search = _search(request, Level.STUDY, Level.SERIES, Level.INSTANCE)
    async with shared_copies(platform) as store:
        studies = await _studies(session, caller, store, search)
        found = await _instances(store, [s.study_uid for s in studies], search)
    base = base_url(request)
    return _answer([instance_json(i, base) for i in _page(found, search)], search, request)


@router.get("/studies/{study}/series", response_class=JSONResponse)
async def search_series(
    request: Request, study: str, session: Session, caller: CurrentUser, platform: PlatformDep
) -> JSONResponse:
    """QIDO-RS Search For Series of one shared study (PS3.18 §10.6.1)."""
    search = _search(request, Level.SERIES)
    await entitled_study(session, caller, study)
    async with shared_copies(platform) as store:
        try:
            found = [s for s in await store.series(study) if search.matches_series(s)]
        except NotFoundInStore as exc:
            raise NotFound("no such study") from exc
    base = base_url(request)
    return _answer([series_json(s, base) for s in _page(found, search)], search, request)


@router.get("/studies/{study}/instances", response_class=JSONResponse)
async def search_study_instances(
    request: Request, study: str, session: Session, caller: CurrentUser, platform: PlatformDep
) -> JSONResponse:
    """QIDO-RS Search For Instances of one shared study (PS3.18 §10.6.1), series keys too."""
    search = _search(request, Level.SERIES, Level.INSTANCE)
    await entitled_study(session, caller, study)
    async with shared_copies(platform) as store:
        try:
            found = await _instances_of(store, study, search)
        except NotFoundInStore as exc:
            raise NotFound("no such study") from exc
    base = base_url(request)
    return _answer([instance_json(i, base) for i in _page(found, search)], search, request)


@router.get("/studies/{study}/series/{series}/instances", response_class=JSONResponse)
async def search_instances(
    request: Request,
    study: str,
    series: str,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
) -> JSONResponse:
    """QIDO-RS Search For Instances of one series of a shared study (PS3.18 §10.6.1)."""
    search = _search(request, Level.INSTANCE)
    await entitled_study(session, caller, study)
    async with shared_copies(platform) as store:
        try:
            found = await store.instances(study, series)
        except NotFoundInStore as exc:
            raise NotFound("no such series") from exc
    found = [i for i in found if search.matches_instance(i)]
    base = base_url(request)
    return _answer([instance_json(i, base) for i in _page(found, search)], search, request)
