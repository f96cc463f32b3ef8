"""`/viewer/shares/{id}`: a share's de-identified study in the browser, and its report.

The page lists the study's series, shows one frame at a time (rendered by
`dicomweb.rendered` from the shared store, through a cookie-authenticated
route of this page so that no token reaches JavaScript), scrolls frames with
buttons, keys and the mouse wheel, offers window/level presets, shows a few
de-identified header attributes, and posts the report form to
`services.imaging.reports.service.sign`. Visibility is the shares': the
share's origin and provider; any other institution gets the same 404 page as
a missing share. Only ready shares are shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.formparsers import MultiPartException

from services.imaging.dicomweb.rendered import parse_frame, parse_window, rendered_png
from services.imaging.locations import shared_copies
from services.imaging.reports import service as reports
from services.imaging.reports.models import ImagingReport
from services.imaging.reports.schemas import ReportCreate
from services.imaging.shares import repository as shares_repo
from services.imaging.shares.models import ImagingShare, ShareStatus
from services.imaging.stores import NotFoundInStore
from services.imaging.viewer import render
from services.imaging.viewer.render import Labels
from shared import audit, pages, web_session
from shared.identity.deps import Caller, get_platform
from shared.identity.models import Role
from shared.problems import JisrError, NotFound

PRESETS: tuple[tuple[str, int, int], ...] = (
    ("soft_tissue", 40, 400),
    ("lung", -600, 1500),
    ("bone", 400, 1800),
    ("brain", 40, 80),
)
HEADER_TAGS: tuple[tuple[str, str], ...] = (
    ("PatientName", "00100010"),
    ("PatientID", "00100020"),
    ("StudyDate", "00080020"),
    ("Modality", "00080060"),
    ("SeriesDescription", "0008103E"),
    ("Rows", "00280010"),
    ("Columns", "00280011"),
    ("PatientIdentityRemoved", "00120062"),
    ("DeidentificationMethod", "00120063"),
)
MAX_FORM_FIELDS = 10


def _labels(request: Request) -> Labels:
    caller: Caller | None = getattr(request.state, "viewer_caller", None)
    return Labels(caller.lang if caller else web_session.page_lang(request))


ERROR_KEYS = {
    "csrf": "viewer.error.csrf",
    "not_found": "viewer.error.not_found",
    "refused": "viewer.error.refused",
}


def _error(
    request: Request, status_code: int, kind: pages.ErrorKind, _: JisrError | None = None
) -> Response:
    """What a handler raised, as a page (`pages.page_route`): 403 for CSRF, 404, refusals."""
    labels = _labels(request)
    key = ERROR_KEYS[kind]
    return render.page(
        request,
        "viewer_error.html",
        labels,
        caller=getattr(request.state, "viewer_caller", None),
        status_code=status_code,
        title=labels.t(key),
    )


router = APIRouter(route_class=pages.page_route(_error), include_in_schema=False)


async def _caller(request: Request) -> Caller:
    caller = await web_session.caller_from_cookie(request, get_platform(request))
    request.state.viewer_caller = caller
    return caller


def _share_id(value: str) -> int:
    if not value.isdigit() or len(value) > 12:
        raise NotFound("no such share")
    return int(value)


async def _ready_share(request: Request, caller: Caller, share_id: int) -> ImagingShare:
    async with get_platform(request).database.transaction() as session:
        share = await shares_repo.get(
            session, share_id=share_id, institution_id=caller.institution_id
        )
    if share is None or share.status != ShareStatus.READY.value or not share.shared_study_uid:
        raise NotFound("no such share")
    return share


# The study as the page shows it -------------------------------------------------------


def _text(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or []
    if not values:
        return ""
    out = []
    for value in values:
        if isinstance(value, dict):
            value = value.get("Alphabetic", "")
        out.append(str(value))
    return "\\".join(out)


@dataclass
class Series:
    uid: str
    number: str
    modality: str
    description: str
    frames: list[tuple[str, int]] = field(default_factory=list)
    """(SOP Instance UID, frame number) in instance order."""
    header: list[tuple[str, str]] = field(default_factory=list)


def _series_of(metadata: list[dict[str, Any]]) -> list[Series]:
    found: dict[str, Series] = {}
    for item in metadata:
        uid = _text(item, "0020000E")
        if not uid or not _text(item, "00280010"):  # no Rows: not an image
            continue
        series = found.get(uid)
        if series is None:
            series = found[uid] = Series(
                uid=uid,
                number=_text(item, "00200011"),
                modality=_text(item, "00080060"),
                description=_text(item, "0008103E"),
                header=[(name, _text(item, tag)) for name, tag in HEADER_TAGS],
            )
        frames = _text(item, "00280008")
        count = int(frames) if frames.isdigit() and int(frames) > 0 else 1
        sop = _text(item, "00080018")
        series.frames.extend((sop, n) for n in range(1, count + 1))
    return [series for series in found.values() if series.frames]


async def _report(request: Request, caller: Caller, share_id: int) -> ImagingReport | None:
    async with get_platform(request).database.transaction() as session:
        try:
            report, _ = await reports.get_report(session, caller, share_id=share_id)
        except NotFound:
            return None
    return report


# Routes -------------------------------------------------------------------------------


@router.get(render.SCRIPT_URL)
async def script() -> Response:
    """The viewer's one script: frames, wheel, keys and presets."""
    return Response(
        render.SCRIPT.read_bytes(),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@router.get("/viewer/shares/{share_id}")
async def viewer_page(share_id: str, request: Request) -> Response:
    """The viewer: series, one frame, presets, the de-identified header, the report."""
    caller = await _caller(request)
    share = await _ready_share(request, caller, _share_id(share_id))
    return await _show(request, caller, share)


async def _show(
    request: Request,
    caller: Caller,
    share: ImagingShare,
    *,
    status_code: int = 200,
    error: str | None = None,
    findings: str = "",
    impression: str = "",
) -> Response:
    study = str(share.shared_study_uid)
    async with shared_copies(get_platform(request)) as store:
        try:
            metadata = await store.metadata(study)
        except NotFoundInStore as exc:
            raise NotFound("no such study") from exc
    all_series = _series_of(metadata)
    if not all_series:
        raise NotFound("no image in this study")
    asked = request.query_params.get("series")
    current = next((s for s in all_series if s.uid == asked), all_series[0])
    base = f"/viewer/shares/{share.id}/series/{current.uid}/instances"
    frames = [f"{base}/{sop}/frames/{n}/rendered" for sop, n in current.frames]
    report = await _report(request, caller, share.id)
    may_sign = (
        report is None
        and share.provider_id == caller.institution_id
        and caller.has(Role.RADIOLOGIST)
    )
    labels = Labels(caller.lang)
    return render.page(
        request,
        "viewer.html",
        labels,
        caller=caller,
        status_code=status_code,
        share=share,
        study=study,
        series=all_series,
        current=current,
        frames=frames,
        presets=PRESETS,
        report=report,
        may_sign=may_sign,
        saved=request.query_params.get("saved") == "1",
        error=error,
        findings=findings,
        impression=impression,
        series_link=lambda uid: f"/viewer/shares/{share.id}?{urlencode({'series': uid})}",
    )


@router.get(
    "/viewer/shares/{share_id}/series/{series}/instances/{instance}/frames/{frame}/rendered"
)
async def viewer_frame(
    share_id: str, series: str, instance: str, frame: str, request: Request
) -> Response:
    """One frame of the share as PNG, for the page's <img> (the cookie is the credential)."""
    caller = await _caller(request)
    share = await _ready_share(request, caller, _share_id(share_id))
    number = parse_frame(frame)
    window = parse_window(request.query_params.get("window"))
    study = str(share.shared_study_uid)
    return await rendered_png(get_platform(request), study, series, instance, number, window)


@router.post("/viewer/shares/{share_id}/report")
async def viewer_report(share_id: str, request: Request) -> Response:
    """Sign the report from the page's form; back to the viewer, or the form with its error."""
    caller = await _caller(request)
    share = await _ready_share(request, caller, _share_id(share_id))
    try:
        form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    except (MultiPartException, ValueError, AssertionError) as exc:
        raise web_session.CsrfRefused from exc
    web_session.check_csrf(request, form)
    findings = str(form.get("findings") or "")
    impression = str(form.get("impression") or "")
    labels = Labels(caller.lang)
    try:
        body = ReportCreate(findings=findings, impression=impression)
    except ValidationError:
        return await _show(
            request,
            caller,
            share,
            status_code=422,
            error=labels.t("viewer.report.incomplete"),
            findings=findings,
            impression=impression,
        )
    platform = get_platform(request)
    try:
        async with platform.database.transaction() as session:
            await reports.sign(session, caller, share_id=share.id, body=body)
    except JisrError as exc:
        if exc.refusal is not None:
            await audit.write_refusal(platform.database, exc.refusal)
        if isinstance(exc, NotFound):
            raise
        return await _show(
            request,
            caller,
            share,
            status_code=exc.status,
            error=labels.t("viewer.report.refused"),
            findings=findings,
            impression=impression,
        )
    target = f"/viewer/shares/{share.id}?saved=1"
    return web_session.finish(request, RedirectResponse(target, status_code=303))
