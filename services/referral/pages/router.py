"""Server-rendered pages in Arabic (right to left), French and English.

Sign in, the inbox and outbox, a new referral, a referral with its routing
reasons, timeline and the actions the caller may take, and the activity chart.
Handlers call the same service functions as the API (no HTTP to ourselves)
and open their own transactions, so a refused action is rolled back before
its refusal is audited and shown as a message in the page language. Errors
are pages, never a 500: a referral the caller may not see is the same 404
page as a missing one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException

from services.referral.pages import activity, flash, forms
from services.referral.pages import referral as referral_page
from services.referral.pages.render import (
    STYLESHEET,
    STYLESHEET_URL,
    Labels,
    labels_for,
    page,
    problem_message,
)
from services.referral.referrals import idempotency, service, views
from services.referral.referrals import repository as repo
from services.referral.workflow import Action, Status
from shared import audit, pages
from shared import web_session as auth
from shared.db import utcnow
from shared.entitlements import vocab
from shared.entitlements.model import ServiceKind, Urgency
from shared.i18n import LANGUAGES
from shared.identity import service as identity
from shared.identity.deps import Caller, get_platform
from shared.identity.models import Role
from shared.pagination import PageParams, paginate
from shared.problems import InvalidCredentials, JisrError, NotFound
from shared.registry import repository as registry_repo
from shared.registry.models import Institution

PAGE_SIZE = 20
MAX_FORM_FIELDS = 40


@dataclass(frozen=True)
class Viewer:
    """The signed-in user of a page, the words of their language, their institution's clock."""

    caller: Caller
    labels: Labels
    institution: str


def _error(
    request: Request,
    status_code: int,
    title: str,
    body: str | None,
    message: str | None = None,
    reasons: list[str] | None = None,
) -> Response:
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    labels = viewer.labels if viewer else Labels(auth.page_lang(request))
    return page(
        request,
        "error.html",
        labels,
        caller=viewer.caller if viewer else None,
        institution=viewer.institution if viewer else None,
        status_code=status_code,
        title=labels.t(title),
        message=message or labels.t(body or title),
        reasons=reasons or [],
    )


def _error_page(
    request: Request, status_code: int, kind: pages.ErrorKind, exc: JisrError | None
) -> Response:
    """What a page handler raised, as a page: 403 for CSRF, 404, or the refusal in words."""
    if kind == "csrf":
        return _error(request, 403, "error.csrf.title", "error.csrf.body")
    if kind == "not_found" or exc is None:
        return _error(request, 404, "error.not_found.title", "error.not_found.body")
    viewer = getattr(request.state, "viewer", None)
    labels = viewer.labels if viewer else Labels(auth.page_lang(request))
    message, reasons = problem_message(exc, labels)
    return _error(request, status_code, f"problem.{exc.slug}", None, message, reasons)


router = APIRouter(route_class=pages.page_route(_error_page), include_in_schema=False)


async def _viewer(request: Request) -> Viewer:
    platform = get_platform(request)
    caller = await auth.caller_from_cookie(request, platform)
    async with platform.database.transaction() as session:
        home = await session.get(Institution, caller.institution_id)
    viewer = Viewer(
        caller=caller,
        labels=labels_for(caller, caller.lang, home.timezone if home else None),
        institution=home.name(caller.lang) if home else "-",
    )
    request.state.viewer = viewer
    return viewer


async def _form(request: Request) -> FormData:
    """The posted form, after its CSRF token was checked."""
    try:
        form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    except (MultiPartException, ValueError, AssertionError) as exc:
        raise auth.CsrfRefused from exc
    auth.check_csrf(request, form)
    return form


def _redirect(request: Request, target: str) -> Response:
    return auth.finish(request, RedirectResponse(target, status_code=303))


def _show(request: Request, template: str, viewer: Viewer, **context: Any) -> Response:
    messages = flash.take(request, viewer.labels) + context.pop("flash", [])
    response = page(
        request,
        template,
        viewer.labels,
        caller=viewer.caller,
        institution=viewer.institution,
        flash=messages,
        **context,
    )
    flash.drop(response, request)
    return response


@router.get(STYLESHEET_URL)
async def stylesheet() -> Response:
    """The pages' one stylesheet."""
    return Response(
        STYLESHEET.read_bytes(),
        media_type="text/css; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )


# Signing in and out -------------------------------------------------------------------


@router.get("/")
async def home(request: Request) -> Response:
    """Specialists start at their inbox, referring physicians at the referrals they sent."""
    viewer = await _viewer(request)
    if viewer.caller.has(Role.REFERRING_PHYSICIAN):
        return _redirect(request, "/outbox")
    return _redirect(request, "/inbox")


@router.get("/login")
async def login_form(request: Request) -> Response:
    """The sign-in form; a user already signed in goes straight on."""
    target = auth.safe_next(request.query_params.get("next"))
    if request.cookies.get(auth.SESSION_COOKIE):
        try:
            await _viewer(request)
            return _redirect(request, target)
        except auth.SignInRequired:
            pass
    return _login_page(request, target)


def _login_page(
    request: Request, target: str, *, status_code: int = 200, error: str | None = None
) -> Response:
    labels = Labels(auth.page_lang(request))
    messages = flash.take(request, labels) + ([("error", error)] if error else [])
    platform = get_platform(request)
    response = page(
        request,
        "login.html",
        labels,
        status_code=status_code,
        flash=messages,
        next=target,
        oidc=platform.oidc.issuer if platform.oidc else None,
    )
    flash.drop(response, request)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the password and keep the access token in an HttpOnly cookie."""
    form = await _form(request)
    target = auth.safe_next(_str(form, "next"))
    labels = Labels(auth.page_lang(request))
    platform = get_platform(request)
    if platform.oidc is not None:
        return _login_page(request, target, status_code=400, error=labels.t("login.oidc_only"))
    try:
        async with platform.database.transaction() as session:
            token, ttl = await identity.sign_in(
                session,
                platform,
                username=_str(form, "username")[:120],
                password=_str(form, "password")[:1024],
            )
    except InvalidCredentials as exc:
        if exc.refusal is not None:
            await audit.write_refusal(platform.database, exc.refusal)
        return _login_page(request, target, status_code=401, error=labels.t("login.failed"))
    response = RedirectResponse(target, status_code=303)
    auth.set_session(response, request, token, ttl)
    return auth.finish(request, response)


@router.get("/logout")
async def logout_form(request: Request) -> Response:
    """Asks before signing out (signing out changes state, so it is a form)."""
    viewer = await _viewer(request)
    return _show(request, "logout.html", viewer)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the session cookies."""
    await _form(request)
    response = RedirectResponse("/login", status_code=303)
    auth.clear_session(response, request)
    flash.put(response, request, "flash.signed_out")
    return auth.finish(request, response)


# Worklists ----------------------------------------------------------------------------


@router.get("/inbox")
async def inbox(request: Request) -> Response:
    """Referrals offered to the caller's institution: most urgent, then longest waiting, first."""
    return await _box(request, "inbox")


@router.get("/outbox")
async def outbox(request: Request) -> Response:
    """Referrals the caller's institution sent."""
    return await _box(request, "outbox")


async def _box(request: Request, box: str) -> Response:
    viewer = await _viewer(request)
    caller = viewer.caller
    query = request.query_params
    statuses = [v for v in query.getlist("status") if v in Status.__members__.values()]
    urgency = query.get("urgency") if query.get("urgency") in Urgency.__members__.values() else None
    number = _int(query.get("page"), 1)
    platform = get_platform(request)
    now = utcnow()
    async with platform.database.transaction() as session:
        rows, pagination = await paginate(
            session,
            repo.worklist(caller.institution_id, box=box, status=statuses, urgency=urgency),
            PageParams(min(number, 100_000), PAGE_SIZE),
        )
        ids = {r.origin_id for r in rows} | {r.provider_id for r in rows if r.provider_id}
        codes = {
            i: x.code for i, x in (await registry_repo.institutions_by_id(session, ids)).items()
        }
        items = [
            views.summary(
                caller,
                row,
                codes,
                now=now,
                identification=await views.identification_for(session, caller, row),
            )
            for row in rows
        ]

    def link(page_number: int) -> str:
        params = [("status", s) for s in statuses] + ([("urgency", urgency)] if urgency else [])
        return f"/{box}?" + urlencode([*params, ("page", str(page_number))])

    return _show(
        request,
        "box.html",
        viewer,
        box=box,
        items=items,
        pagination=pagination,
        statuses=[s.value for s in Status],
        urgencies=[u.value for u in Urgency],
        selected_status=statuses[0] if statuses else "",
        selected_urgency=urgency or "",
        link=link,
    )


# Submitting a case --------------------------------------------------------------------


@router.get("/referrals/new")
async def new_referral(request: Request) -> Response:
    """The form of a new referral, its specialties and services named in the page language."""
    viewer = await _viewer(request)
    values = forms.referral_values({})
    values.update(urgency=Urgency.ROUTINE.value, service=ServiceKind.SECOND_OPINION.value)
    values["languages"] = [lang for lang in viewer.caller.languages if lang in LANGUAGES]
    return _new_form(request, viewer, values)


def _new_form(
    request: Request,
    viewer: Viewer,
    values: forms.Values,
    *,
    errors: forms.FieldErrors | None = None,
    status_code: int = 200,
    messages: list[tuple[str, str]] | None = None,
    reasons: list[str] | None = None,
) -> Response:
    labels = viewer.labels
    specialties = sorted(
        ((code, term.label(labels.lang)) for code, term in vocab.specialties().items()),
        key=lambda item: item[1].casefold(),
    )
    services = [(code, term.label(labels.lang)) for code, term in vocab.service_kinds().items()]
    return _show(
        request,
        "new.html",
        viewer,
        status_code=status_code,
        values=values,
        errors=errors or {},
        flash=messages or [],
        reasons=reasons or [],
        specialties=specialties,
        services=services,
        urgencies=[u.value for u in Urgency],
        sexes=["F", "M", "O", "U"],
        form_key=secrets.token_urlsafe(16),
    )


@router.post("/referrals/new")
async def submit_referral(request: Request) -> Response:
    """Submit the case: routed at once; errors come back next to the fields, nothing is kept."""
    viewer = await _viewer(request)
    form = await _form(request)
    labels, caller = viewer.labels, viewer.caller
    values = forms.referral_values(form)
    data = forms.referral_create(values, labels)
    if isinstance(data, dict):
        summary = [("error", labels.t("form.error.summary"))]
        return _new_form(request, viewer, values, errors=data, status_code=422, messages=summary)
    platform = get_platform(request)
    claim = None
    try:
        key = _str(form, "form_key")
        if key:
            claimed = await idempotency.claim(
                platform.database,
                user_id=caller.user_id,
                key=f"page:{key[:200]}",
                body=data.model_dump(mode="json"),
            )
            if isinstance(claimed, dict):  # the same form, sent twice: show the first answer
                return _redirect(request, f"/referrals/{int(claimed['body']['id'])}")
            claim = claimed
        async with platform.database.transaction() as session:
            referral = await service.submit(session, caller, data=data, now=utcnow())
            provider = await session.get(Institution, referral.provider_id or 0)
            if claim is not None:
                await idempotency.complete(
                    session, claim, status_code=201, body={"id": referral.id}
                )
    except JisrError as exc:
        if claim is not None:
            await idempotency.withdraw(platform.database, claim)
        if exc.refusal is not None:
            await audit.write_refusal(platform.database, exc.refusal)
        message, reasons = problem_message(exc, labels)
        return _new_form(
            request,
            viewer,
            values,
            status_code=exc.status,
            messages=[("error", message)],
            reasons=reasons,
        )
    except BaseException:
        if claim is not None:
            await idempotency.withdraw(platform.database, claim)
        raise
    response = _redirect(request, f"/referrals/{referral.id}")
    flash.put(
        response,
        request,
        "flash.submitted",
        id=referral.id,
        provider=provider.name(labels.lang) if provider else "-",
    )
    return response


# One referral -------------------------------------------------------------------------


@router.get("/referrals/{referral_id}")
async def show_referral(request: Request, referral_id: int) -> Response:
    """The referral: patient as this side may see it, routing ranking and reasons, timeline, actions."""
    viewer = await _viewer(request)
    context = await referral_page.context(
        get_platform(request), viewer.caller, viewer.labels, referral_id
    )
    return _show(request, "referral.html", viewer, **context)


@router.post("/referrals/{referral_id}/{action}")
async def act(request: Request, referral_id: int, action: str) -> Response:
    """Take one workflow action from its form; a refusal comes back as a message on the page."""
    viewer = await _viewer(request)
    form = await _form(request)
    try:
        chosen = Action(action)
    except ValueError:
        raise NotFound(f"no action {action}") from None
    if chosen not in forms.BODIES:
        raise NotFound(f"no action {action}")
    labels, caller = viewer.labels, viewer.caller
    platform = get_platform(request)
    values = forms.action_values(chosen, form)
    body = forms.action_body(chosen, values, labels, labels.tz)
    if isinstance(body, dict):
        return await _referral_again(
            request,
            viewer,
            referral_id,
            status_code=422,
            messages=[("error", labels.t("form.error.summary"))],
            open_form=chosen.value,
            errors=body,
            values=values,
        )
    try:
        async with platform.database.transaction() as session:
            await service.act(
                session,
                caller,
                referral_id=referral_id,
                action=chosen,
                body=body,
                now=utcnow(),
            )
    except NotFound:
        raise
    except JisrError as exc:
        if exc.refusal is not None:
            await audit.write_refusal(platform.database, exc.refusal)
        message, reasons = problem_message(exc, labels)
        return await _referral_again(
            request,
            viewer,
            referral_id,
            status_code=exc.status,
            messages=[("error", message)] + [("reason", r) for r in reasons],
            open_form=chosen.value,
            values=values,
        )
    response = _redirect(request, f"/referrals/{referral_id}")
    flash.put(response, request, f"flash.done.{chosen.value}", id=referral_id)
    return response


async def _referral_again(
    request: Request,
    viewer: Viewer,
    referral_id: int,
    *,
    status_code: int,
    messages: list[tuple[str, str]],
    open_form: str,
    values: forms.Values,
    errors: forms.FieldErrors | None = None,
) -> Response:
    context = await referral_page.context(
        get_platform(request),
        viewer.caller,
        viewer.labels,
        referral_id,
        open_form=open_form,
        values=values,
        errors=errors or {},
    )
    return _show(
        request, "referral.html", viewer, status_code=status_code, flash=messages, **context
    )


# Activity -----------------------------------------------------------------------------


@router.get("/reports/activity")
async def activity_report(request: Request) -> Response:
    """Activity under one agreement: a chart of referrals per month and the figures behind it."""
    viewer = await _viewer(request)
    context = await activity.context(get_platform(request), viewer.caller, viewer.labels, request)
    return _show(request, "activity.html", viewer, **context)


# Helpers ------------------------------------------------------------------------------


def _str(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _int(value: str | None, default: int) -> int:
    try:
        number = int(value or default)
    except ValueError:
        return default
    return number if number >= 1 else default
