"""The teleconsult page's rendering: its templates in the shared layout, its scripts' words.

The browser session (cookies, CSRF, page language) is `shared.web_session` and
the layout and page responses `shared.pages`, as for the other services' pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared import pages
from shared.i18n import translate

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).parents[1] / "static"
STATIC_URL = "/teleconsults/static"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
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
class Labels(pages.Labels):
    def script_strings(self) -> dict[str, str]:
        return {key: translate(key, self.lang) for key in SCRIPT_STRINGS}


RENDERER = pages.Renderer(
    TEMPLATES,
    csp=CSP,
    # The page asks for the camera and microphone of its own origin, nothing else.
    headers={"Permissions-Policy": "camera=(self), microphone=(self)"},
    context={"static": STATIC_URL},
)
page = RENDERER.page


def static_file(name: str) -> tuple[bytes, str] | None:
    """One of the client's own files (no path traversal: a flat folder, known suffixes)."""
    path = STATIC / name
    kind = STATIC_TYPES.get(path.suffix)
    if kind is None or "/" in name or name.startswith(".") or not path.is_file():
        return None
    return path.read_bytes(), kind
