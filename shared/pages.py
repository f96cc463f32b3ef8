"""What the services' server-rendered pages share: the layout, the renderer, the error routes.

Each service keeps its own templates and words; they extend `jisr_layout.html`
(`page_layouts/`: top bar, language links, sign-out form, blocks `head`, `nav`,
`who`, `main`, `content`, `footer`). `Renderer` renders a template in the
reader's language with what the layout needs and answers it with the headers
every page carries (no caching, no framing, the service's CSP), through
`web_session.finish` for the CSRF cookie. `page_route()` gives the APIRoute that
turns what a page handler raises into pages: the sign-in redirect, the CSRF
refusal, 404 for a row the caller may not see, and the refusal (audited after
the rollback) for the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute

from shared import audit, web_session
from shared.i18n import LANGUAGES, RTL_LANGUAGES, translate
from shared.identity.deps import Caller, get_platform
from shared.problems import JisrError, NotFound

LAYOUTS = Path(__file__).with_name("page_layouts")
STYLESHEET_URL = "/pages/static/jisr.css"
"""The platform's one stylesheet (served by the referral service's pages)."""

ErrorKind = Literal["csrf", "not_found", "refused"]
ErrorPage = Callable[[Request, int, ErrorKind, JisrError | None], Response]
"""A service's error page: (request, status, what went wrong, the refusal if any)."""


@dataclass(frozen=True)
class Labels:
    """The page language: its direction and its words."""

    lang: str

    @property
    def dir(self) -> str:
        return "rtl" if self.lang in RTL_LANGUAGES else "ltr"

    def t(self, key: str, /, **params: Any) -> str:
        return translate(key, self.lang, **params)


class Renderer:
    """One service's templates (beside the shared layout), rendered into page responses."""

    def __init__(
        self,
        templates: Path,
        *,
        csp: str,
        headers: Mapping[str, str] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """`headers` go on every page beside the common ones; `context` into every template."""
        self.csp = csp
        self.headers = dict(headers or {})
        self.context = dict(context or {})
        self.environment = jinja2.Environment(
            loader=jinja2.ChoiceLoader(
                [jinja2.FileSystemLoader(templates), jinja2.FileSystemLoader(LAYOUTS)]
            ),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def page(
        self,
        request: Request,
        template: str,
        labels: Labels,
        *,
        caller: Caller | None = None,
        status_code: int = 200,
        **context: Any,
    ) -> Response:
        """`template` in the reader's language, with the CSRF token its forms need."""
        body = self.environment.get_template(template).render(
            t=labels.t,
            lang=labels.lang,
            dir=labels.dir,
            languages=LANGUAGES,
            caller=caller,
            csrf_field=web_session.CSRF_FIELD,
            csrf=web_session.csrf_token(request),
            here=web_session.here(request),
            stylesheet=STYLESHEET_URL,
            **{**self.context, **context},
        )
        response = HTMLResponse(body, status_code=status_code)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = self.csp
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.update(self.headers)
        return web_session.finish(request, response)


def page_route(error_page: ErrorPage) -> type[APIRoute]:
    """The route class of a service's pages, answering failures with `error_page`."""

    class PageRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except web_session.SignInRequired as exc:
                    return web_session.login_redirect(request, exc.next_path, clear=exc.clear)
                except web_session.CsrfRefused:
                    return error_page(request, 403, "csrf", None)
                except RequestValidationError:
                    return error_page(request, 404, "not_found", None)
                except JisrError as exc:
                    if exc.refusal is not None:
                        await audit.write_refusal(get_platform(request).database, exc.refusal)
                    if isinstance(exc, NotFound):
                        return error_page(request, 404, "not_found", None)
                    return error_page(request, exc.status, "refused", exc)

            return guarded

    return PageRoute
