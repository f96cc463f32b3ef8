"""`/teleconsults/{id}`: the browser client's page, and the two routes its script calls.

The page is for the users of the session's two institutions (anyone else gets
the same 404 page as a missing session). Its script joins through
`POST /teleconsults/{id}/join`, posts its `getStats` summaries to
`POST /teleconsults/{id}/stats` and the participant's recording consent to
`POST /teleconsults/{id}/consent`: the same service functions as the API's
`/api/teleconsults/{id}/join`, `/stats` and `/consent`, authenticated by the page's cookie
session and its CSRF token in the `X-CSRF-Token` header, so that no access
token ever reaches JavaScript. Their errors are problem+json, audited like the
API's.
"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from services.teleconsult.pages import render
from services.teleconsult.pages.render import Labels
from services.teleconsult.sessions import joining, quality, recording, views
from services.teleconsult.sessions import repository as repo
from services.teleconsult.sessions import service as sessions
from services.teleconsult.sessions.access import Attendee
from services.teleconsult.sessions.schemas import ConsentBody, StatsSample
from shared import pages as shared_pages
from shared import web_session
from shared.identity.deps import Caller, get_platform
from shared.problems import Forbidden, JisrError, NotFound, Unauthorized, Unprocessable

CSRF_HEADER = "x-csrf-token"
MAX_BODY_BYTES = 4096


router = APIRouter(include_in_schema=False)
ERROR_KEYS = {"csrf": "tc.csrf", "not_found": "tc.not_found", "refused": "tc.refused_page"}


def _error(
    request: Request, status_code: int, kind: shared_pages.ErrorKind, _: JisrError | None = None
) -> Response:
    """What a page handler raised, as a page (`shared.pages.page_route`): 404, refusals."""
    key = ERROR_KEYS[kind]
    caller: Caller | None = getattr(request.state, "tc_caller", None)
    labels = Labels(caller.lang if caller else web_session.page_lang(request))
    return render.page(
        request, "error.html", labels, caller=caller, status_code=status_code, title=labels.t(key)
    )


pages = APIRouter(route_class=shared_pages.page_route(_error), include_in_schema=False)


def _session_id(value: str) -> int:
    if not value.isdigit() or len(value) > 12:
        raise NotFound("no such teleconsultation")
    return int(value)


@router.get(render.STATIC_URL + "/{name}")
async def client_file(name: str) -> Response:
    """The browser client's scripts and stylesheet."""
    found = render.static_file(name)
    if found is None:
        raise NotFound("no such file")
    body, media_type = found
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})


@pages.get("/teleconsults/{session_id}")
async def teleconsult_page(session_id: str, request: Request) -> Response:
    """The call: lobby, waiting room, remote video, chat, controls."""
    platform = get_platform(request)
    caller = await web_session.caller_from_cookie(request, platform)
    request.state.tc_caller = caller
    number = _session_id(session_id)
    async with platform.database.transaction() as session:
        row = await sessions.get(session, caller, session_id=number)
        zones = await repo.institution_zones(session, [caller.institution_id])
        people = await repo.participants(session, row.id)
    labels = Labels(caller.lang)
    local = views.slot(row, zones.get(caller.institution_id, "UTC"))
    slot = labels.t(
        "tc.slot",
        start=local.starts_at.strftime("%Y-%m-%d %H:%M"),
        end=local.ends_at.strftime("%H:%M"),
        tz=local.timezone,
    )
    return render.page(
        request,
        "teleconsult.html",
        labels,
        caller=caller,
        session_id=row.id,
        slot=slot,
        others=[p.display_name for p in people if p.user_id != caller.user_id],
        low_bandwidth=row.low_bandwidth,
        join_url=f"/teleconsults/{row.id}/join",
        stats_url=f"/teleconsults/{row.id}/stats",
        consent_url=f"/teleconsults/{row.id}/consent",
        strings=labels.script_strings(),
    )


async def _small_json(request: Request) -> bytes:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise Unprocessable("the page's calls carry a small JSON object")
    return raw


async def _script_caller(request: Request) -> Caller:
    """The cookie session's caller for a script's call, with its CSRF header checked."""
    try:
        caller = await web_session.caller_from_cookie(request, get_platform(request))
    except web_session.SignInRequired as exc:
        raise Unauthorized("sign in again: the page's session has expired") from exc
    try:
        web_session.check_csrf(
            request, {web_session.CSRF_FIELD: request.headers.get(CSRF_HEADER, "")}
        )
    except web_session.CsrfRefused as exc:
        raise Forbidden("the page's CSRF token is missing or wrong", rule="csrf") from exc
    return caller


@router.post("/teleconsults/{session_id}/join")
async def page_join(session_id: str, request: Request) -> JSONResponse:
    """Join from the page: the join token, ICE servers and socket path (as the API's join)."""
    caller = await _script_caller(request)
    platform = get_platform(request)
    async with platform.database.transaction() as session:
        ticket = await joining.join(
            session, Attendee(caller=caller), platform=platform, session_id=_session_id(session_id)
        )
    return JSONResponse(asdict(ticket), headers={"Cache-Control": "no-store"})


@router.post("/teleconsults/{session_id}/stats")
async def page_stats(session_id: str, request: Request) -> Response:
    """One `getStats` summary from the page (as the API's stats route)."""
    caller = await _script_caller(request)
    raw = await _small_json(request)
    try:
        body = StatsSample.model_validate_json(raw)
    except ValidationError as exc:
        raise Unprocessable("not a quality sample") from exc
    platform = get_platform(request)
    async with platform.database.transaction() as session:
        await quality.post_sample(
            session, Attendee(caller=caller), session_id=_session_id(session_id), body=body
        )
    return Response(status_code=204)


@router.post("/teleconsults/{session_id}/consent")
async def page_consent(session_id: str, request: Request) -> JSONResponse:
    """The participant's answer on recording, from the page (as the API's consent route)."""
    caller = await _script_caller(request)
    try:
        body = ConsentBody.model_validate_json(await _small_json(request))
    except ValidationError as exc:
        raise Unprocessable('send {"recording": true} or {"recording": false}') from exc
    platform = get_platform(request)
    async with platform.database.transaction() as session:
        answer = await recording.give_consent(
            session,
            Attendee(caller=caller),
            session_id=_session_id(session_id),
            recording=body.recording,
        )
    return JSONResponse(answer.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


router.include_router(pages)
