"""The viewer's browser session and rendering: the pages' cookies, words, and one HTML response.

The imaging service does not import the referral service, so the few lines of
the pages' session it needs are repeated here: the same cookie names (access
token, CSRF token, language), the same double-submit CSRF check, the same
language choice (`?lang=`, kept in a cookie; else the user's languages; else
Accept-Language). Tokens are verified by `shared.identity.deps.get_caller`,
exactly as for the API and the referral pages.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shared import audit
from shared.i18n import LANGUAGES, RTL_LANGUAGES, negotiate, translate
from shared.identity import deps
from shared.identity.deps import Caller
from shared.platform import Platform
from shared.problems import Unauthorized

SESSION_COOKIE = "jisr_session"
CSRF_COOKIE = "jisr_csrf"
LANG_COOKIE = "jisr_lang"
CSRF_FIELD = "csrf_token"
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600

TEMPLATES = Path(__file__).with_name("templates")
SCRIPT = Path(__file__).with_name("static") / "viewer.js"
SCRIPT_URL = "/viewer/static/viewer.js"
STYLESHEET_URL = "/pages/static/jisr.css"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SignInRequired(Exception):
    def __init__(self, next_path: str, *, clear: bool = False) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.clear = clear


class CsrfRefused(Exception):
    """A form came without the session's CSRF token."""


@dataclass(frozen=True)
class Labels:
    lang: str

    @property
    def dir(self) -> str:
        return "rtl" if self.lang in RTL_LANGUAGES else "ltr"

    def t(self, key: str, /, **params: Any) -> str:
        return translate(key, self.lang, **params)


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def here(request: Request) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


def page_lang(request: Request, preferred: tuple[str, ...] = ()) -> str:
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    kept = request.cookies.get(LANG_COOKIE)
    if kept in LANGUAGES:
        return kept
    own = next((lang for lang in preferred if lang in LANGUAGES), None)
    return own or negotiate(request.headers.get("accept-language"))


async def caller_from_cookie(request: Request, platform: Platform) -> Caller:
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


def login_redirect(request: Request, next_path: str, *, clear: bool = False) -> Response:
    response = RedirectResponse("/login?" + urlencode({"next": next_path}), status_code=303)
    if clear:
        for name in (SESSION_COOKIE, CSRF_COOKIE):
            response.delete_cookie(
                name, path="/", httponly=True, samesite="strict", secure=secure(request)
            )
    return response


def csrf_token(request: Request) -> str:
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


def finish(request: Request, response: Response) -> Response:
    """The cookies a response may owe: a CSRF token issued now, the language picked now."""
    fresh = getattr(request.state, "csrf_new", None)
    if fresh and not request.cookies.get(CSRF_COOKIE):
        response.set_cookie(
            CSRF_COOKIE, fresh, path="/", httponly=True, samesite="strict", secure=secure(request)
        )
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


def page(
    request: Request,
    template: str,
    labels: Labels,
    *,
    caller: Caller | None = None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    body = (
        environment()
        .get_template(template)
        .render(
            t=labels.t,
            lang=labels.lang,
            dir=labels.dir,
            languages=LANGUAGES,
            caller=caller,
            csrf_field=CSRF_FIELD,
            csrf=csrf_token(request),
            here=here(request),
            stylesheet=STYLESHEET_URL,
            script=SCRIPT_URL,
            **context,
        )
    )
    response = HTMLResponse(body, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Referrer-Policy"] = "same-origin"
    return finish(request, response)
