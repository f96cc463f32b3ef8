"""The teleconsult page's rendering: words in the page language, one HTML response, its scripts.

The browser session itself (cookies, CSRF, page language) is `shared.web_session`,
as for the referral pages and the imaging viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from shared.i18n import LANGUAGES, RTL_LANGUAGES, translate
from shared.identity.deps import Caller
from shared.web_session import CSRF_FIELD, csrf_token, finish, here

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).parents[1] / "static"
STATIC_URL = "/teleconsults/static"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
STYLESHEET_URL = "/pages/static/jisr.css"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""`connect-src 'self'` covers the same-origin signalling socket (CSP Level 3 matches ws/wss)."""
SCRIPT_STRINGS = (
    "tc.joining", "tc.admit", "tc.admitted", "tc.you", "tc.me", "tc.someone", "tc.mute",
    "tc.unmute", "tc.camera_off", "tc.camera_on", "tc.end_confirm", "tc.connected",
    "tc.reconnecting", "tc.reconnected", "tc.peer_joined", "tc.left", "tc.ended",
    "tc.refused", "tc.error", "tc.consent_given", "tc.consent_refused", "tc.consent_all",
    "tc.consent_error", "tc.replaced", "tc.refused_socket", "tc.closed_socket",
)  # fmt: skip
"""The words the script shows, handed to it in the page language."""


@dataclass(frozen=True)
class Labels:
    lang: str

    @property
    def dir(self) -> str:
        return "rtl" if self.lang in RTL_LANGUAGES else "ltr"

    def t(self, key: str, /, **params: Any) -> str:
        return translate(key, self.lang, **params)

    def script_strings(self) -> dict[str, str]:
        return {key: translate(key, self.lang) for key in SCRIPT_STRINGS}


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


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
            static=STATIC_URL,
            **context,
        )
    )
    response = HTMLResponse(body, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Referrer-Policy"] = "same-origin"
    # The page asks for the camera and microphone of its own origin, nothing else.
    response.headers["Permissions-Policy"] = "camera=(self), microphone=(self)"
    return finish(request, response)


def static_file(name: str) -> tuple[bytes, str] | None:
    """One of the client's own files (no path traversal: a flat folder, known suffixes)."""
    path = STATIC / name
    kind = STATIC_TYPES.get(path.suffix)
    if kind is None or "/" in name or name.startswith(".") or not path.is_file():
        return None
    return path.read_bytes(), kind
