"""ICE servers for a peer: our STUN servers, and TURN with coturn REST-API credentials.

coturn's `use-auth-secret` scheme (the "TURN REST API" draft, draft-uberti-behave-turn-rest):
the username is `<expiry unix time>:<peer>` and the password is
base64(HMAC-SHA1(static-auth-secret, username)). coturn recomputes the password
from its own copy of the secret and refuses the allocation once the time in the
username has passed, so credentials need no database and cannot outlive the
session they were handed out for (its end plus the overrun margin).

Never a public default: with no STUN or TURN configured a peer gets `[]`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    username: str
    credential: str
    expires_at: int
    """Unix time after which coturn refuses these credentials."""


def turn_credentials(secret: str, peer: str, *, expires_at: int) -> TurnCredentials:
    """The coturn REST-API username and password of `peer`, valid until `expires_at` (pure)."""
    username = f"{int(expires_at)}:{peer}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(username, base64.b64encode(digest).decode("ascii"), int(expires_at))


def credential_expiry(ends_at: datetime, *, margin_s: int) -> int:
    """TURN credentials last until the session's end plus the margin, never longer."""
    return int((ends_at + timedelta(seconds=margin_s)).timestamp())


def ice_servers(settings: Settings, peer: str, *, ends_at: datetime) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries (W3C WebRTC §4.2.1) for `peer` in a session ending at `ends_at`."""
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls:
        creds = turn_credentials(
            settings.turn_secret,
            peer,
            expires_at=credential_expiry(ends_at, margin_s=settings.teleconsult_overrun_s),
        )
        servers.append(
            {
                "urls": list(settings.turn_urls),
                "username": creds.username,
                "credential": creds.credential,
            }
        )
    return servers
