"""Which browser origins may open a signalling socket (RFC 6454 origins, RFC 6455 §10.2).

A browser always sends `Origin` on a WebSocket handshake and lets any page
open a socket anywhere, so the server must refuse pages of other sites
(cross-site WebSocket hijacking). Clients that are not browsers (aiortc peers,
the recorder) send no `Origin` and are judged by their join token alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _normal(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin.strip().rstrip("/"))
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _host(host: str, scheme: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(f"//{host.strip()}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def allowed(origin: str | None, *, host: str | None, allowed_origins: Sequence[str]) -> bool:
    """True when a socket opened from `origin` may proceed.

    No `Origin`: not a browser, allowed. With `allowed_origins` set, the origin
    must be one of them (scheme, host and port compared, default ports
    implied). With it empty, the origin must be the app's own: its host and
    port equal the request's `Host` header.
    """
    if origin is None:
        return True
    given = _normal(origin)
    if given is None:
        return False
    if allowed_origins:
        return any(_normal(o) == given for o in allowed_origins)
    if not host:
        return False
    return _host(host, given[0]) == given[1:]
