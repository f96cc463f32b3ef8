"""The viewer's browser session and rendering: the pages' cookies, words, and one HTML response.

The session itself (cookies, CSRF, page language) is `shared.web_session`, the
same as the referral pages'; its names are re-exported here for the router.
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
from shared.web_session import (
    CSRF_FIELD,
    csrf_token,
    finish,
    here,
)

TEMPLATES = Path(__file__).with_name("templates")
SCRIPT = Path(__file__).with_name("static") / "viewer.js"
SCRIPT_URL = "/viewer/static/viewer.js"
STYLESHEET_URL = "/pages/static/jisr.css"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


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
