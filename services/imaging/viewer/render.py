"""The viewer's rendering: its templates in the shared page layout, its CSP and script.

The browser session (cookies, CSRF, page language) is `shared.web_session` and
the layout and page responses `shared.pages`, as for the other services' pages.
"""

from __future__ import annotations

from pathlib import Path

from shared import pages
from shared.pages import Labels

__all__ = ["Labels", "page"]

TEMPLATES = Path(__file__).with_name("templates")
SCRIPT = Path(__file__).with_name("static") / "viewer.js"
SCRIPT_URL = "/viewer/static/viewer.js"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
RENDERER = pages.Renderer(TEMPLATES, csp=CSP, context={"script": SCRIPT_URL})
page = RENDERER.page
