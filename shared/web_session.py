"""The browser session of the pages: an access token in a cookie, a CSRF token, the page language.

Signing in through `/login` stores the same signed access token the API
issues in an HttpOnly, SameSite=Strict cookie (Secure over https); every page
reads its caller from that cookie through `shared.identity.deps.get_caller`, so
pages and API verify tokens and build the `Caller` the same way.

State-changing forms carry a CSRF token: a random value kept in a second
cookie and repeated in a hidden field, compared in constant time (the
double-submit pattern, on top of SameSite=Strict).

The page language is the one the user picked with `?lang=` (kept in a
cookie), else the user's own languages, else the browser's Accept-Language.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from shared import audit
from shared.i18n import LANGUAGES, negotiate
from shared.identity import deps
from shared.identity.deps import Caller
from shared.platform import Platform
from shared.problems import Unauthorized

SESSION_COOKIE = "jisr_session"
CSRF_COOKIE = "jisr_csrf"
LANG_COOKIE = "jisr_lang"
CSRF_FIELD = "csrf_token"
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600


class SignInRequired(Exception):
    """The page needs a signed-in user; the browser goes to `/login?next=<this page>`."""

    def __init__(self, next_path: str, *, clear: bool = False) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.clear = clear
        """True when the cookie held a token that is no longer valid: drop it."""


class CsrfRefused(Exception):
    """A state-changing form came without the session's CSRF token."""


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def here(request: Request) -> str:
    """This page's local path and query, without the language switch."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


def safe_next(value: str | None) -> str:
    """A local path to go back to after signing in; anything else (another site) becomes `/`."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def login_redirect(request: Request, next_path: str, *, clear: bool = False) -> RedirectResponse:
    target = "/login" + (f"?{urlencode({'next': next_path})}" if next_path != "/" else "")
    response = RedirectResponse(target, status_code=303)
    if clear:
        clear_session(response, request)
    return response


# Language -----------------------------------------------------------------------------


def chosen_lang(request: Request) -> str | None:
    """The language the user picked: `?lang=` now, or the cookie it left."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    kept = request.cookies.get(LANG_COOKIE)
    return kept if kept in LANGUAGES else None


def page_lang(request: Request, preferred: tuple[str, ...] = ()) -> str:
    chosen = chosen_lang(request)
    if chosen is not None:
        return chosen
    own = next((lang for lang in preferred if lang in LANGUAGES), None)
    return own or negotiate(request.headers.get("accept-language"))


# Session ------------------------------------------------------------------------------


async def caller_from_cookie(request: Request, platform: Platform) -> Caller:
    """The signed-in caller, speaking the page language; `SignInRequired` when there is none."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired(here(request))
    try:
        caller = await deps.get_caller(request, platform, token)
    except Unauthorized as exc:
        if exc.refusal is not None:
            await audit.write_refusal(platform.database, exc.refusal)
        raise SignInRequired(here(request), clear=True) from exc
    return dataclasses.replace(caller, lang=page_lang(request, caller.languages))


def set_session(response: Response, request: Request, token: str, ttl_s: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=ttl_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )
    # A new session gets a new CSRF token: one planted before sign-in is worthless after it.
    _set_csrf(response, request, secrets.token_urlsafe(32))
    request.state.csrf_done = True


def clear_session(response: Response, request: Request) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(
            name, path="/", httponly=True, samesite="strict", secure=secure(request)
        )
    request.state.csrf_done = True


# CSRF ---------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """The session's CSRF token for the hidden field; a new one is issued if the cookie has none."""
    current = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "csrf_new", None)
    if current:
        return str(current)
    fresh = secrets.token_urlsafe(32)
    request.state.csrf_new = fresh
    return fresh


def check_csrf(request: Request, form: Mapping[str, Any]) -> None:
    expected = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD)
    if not expected or not isinstance(sent, str) or not sent:
        raise CsrfRefused
    if not hmac.compare_digest(expected.encode(), sent.encode()):
        raise CsrfRefused


def _set_csrf(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        CSRF_COOKIE, value, path="/", httponly=True, samesite="strict", secure=secure(request)
    )


def finish(request: Request, response: Response) -> Response:
    """Cookies every page response may need: a CSRF token issued now, the language picked now."""
    fresh = getattr(request.state, "csrf_new", None)
    done = getattr(request.state, "csrf_done", False)
    if fresh and not done and not request.cookies.get(CSRF_COOKIE):
        _set_csrf(response, request, fresh)
    asked = request.query_params.get("lang")
    if asked in LANGUAGES and asked != request.cookies.get(LANG_COOKIE):
        response.set_cookie(
            LANG_COOKIE,
            asked,
            max_age=LANG_COOKIE_MAX_AGE,
            path="/",
            httponly=True,
            samesite="lax",
            secure=secure(request),
        )
    return response
