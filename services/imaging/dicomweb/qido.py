"""QIDO-RS for partners (PS3.18 §10.6): search the de-identified studies shared with the caller.

Answers come from the shared store only, and only for studies of ready shares
whose provider (or origin) is the caller's institution; anything else is 404,
never 403, so that a UID's existence does not leak. Matching follows PS3.4
C.2.2.2 as the stores implement it: StudyInstanceUID, PatientID, PatientName,
AccessionNumber (wildcards), StudyDate (ranges), ModalitiesInStudy; `limit`
and `offset` page the result. Unsupported keys are ignored (PS3.18 §8.3.4.1
lets an origin server do so). Responses are `application/dicom+json`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from services.imaging.locations import shared_copies
from services.imaging.shares import repository as shares
from services.imaging.stores import InstanceRef, NotFoundInStore, SeriesSummary, StudySummary
from shared.identity.deps import Caller, CurrentUser, PlatformDep, Session
from shared.problems import BadRequest, NotFound

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

DICOM_JSON = "application/dicom+json"


async def entitled_study(session: Session, caller: Caller, study_uid: str) -> None:
    """404 unless the caller's institution may read this de-identified study."""
    if study_uid not in await shares.visible_study_uids(
        session, institution_id=caller.institution_id
    ):
        raise NotFound("no such study")


def base_url(request: Request) -> str:
    """Where this DICOMweb service is, as the caller reached it (for Retrieve URL, 0008,1190)."""
    return f"{str(request.base_url).rstrip('/')}/dicomweb"


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


def _page(items: list[Any], offset: int, limit: int | None) -> list[Any]:
    return items[offset : offset + limit if limit is not None else None]


def _answer(items: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(items, media_type=DICOM_JSON)


Limit = Annotated[int | None, Query(ge=0, le=10_000)]
Offset = Annotated[int, Query(ge=0)]
Text = Annotated[str | None, Query(max_length=256)]


@router.get("/studies", response_class=JSONResponse)
async def search_studies(
    request: Request,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
    StudyInstanceUID: Text = None,
    PatientID: Text = None,
    PatientName: Text = None,
    AccessionNumber: Text = None,
    StudyDate: Text = None,
    ModalitiesInStudy: Text = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> JSONResponse:
    """QIDO-RS Search For Studies (PS3.18 §10.6.1) among the studies shared with the caller."""
    visible = await shares.visible_study_uids(session, institution_id=caller.institution_id)
    if not visible or (StudyInstanceUID and StudyInstanceUID not in visible):
        return _answer([])
    base = base_url(request)
    async with shared_copies(platform) as store:
        try:
            found = await store.studies(
                study_uid=StudyInstanceUID or None,
                patient_id=PatientID or None,
                patient_name=PatientName or None,
                accession_number=AccessionNumber or None,
                study_date=StudyDate or None,
                modality=ModalitiesInStudy or None,
            )
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
    studies = [study for study in found if study.study_uid in visible]
    return _answer([study_json(study, base) for study in _page(studies, offset, limit)])


@router.get("/studies/{study}/series", response_class=JSONResponse)
async def search_series(
    request: Request,
    study: str,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
    Modality: Text = None,
    SeriesInstanceUID: Text = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> JSONResponse:
    """QIDO-RS Search For Series of one shared study (PS3.18 §10.6.1)."""
    await entitled_study(session, caller, study)
    async with shared_copies(platform) as store:
        try:
            found = await store.series(study)
        except NotFoundInStore as exc:
            raise NotFound("no such study") from exc
    found = [
        s
        for s in found
        if (not Modality or s.modality.upper() == Modality.upper())
        and (not SeriesInstanceUID or s.series_uid == SeriesInstanceUID)
    ]
    return _answer([series_json(s, base_url(request)) for s in _page(found, offset, limit)])


@router.get("/studies/{study}/series/{series}/instances", response_class=JSONResponse)
async def search_instances(
    request: Request,
    study: str,
    series: str,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
    SOPInstanceUID: Text = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> JSONResponse:
    """QIDO-RS Search For Instances of one series of a shared study (PS3.18 §10.6.1)."""
    await entitled_study(session, caller, study)
    async with shared_copies(platform) as store:
        try:
            found = await store.instances(study, series)
        except NotFoundInStore as exc:
            raise NotFound("no such series") from exc
    found = [i for i in found if not SOPInstanceUID or i.sop_instance_uid == SOPInstanceUID]
    return _answer([instance_json(i, base_url(request)) for i in _page(found, offset, limit)])
