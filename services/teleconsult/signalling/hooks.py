"""What signalling asks of the rest of the teleconsult service, each behind one function.

The socket needs four things it does not decide itself: the ICE servers a
peer is given, whether a peer holding a valid join token may still enter (the
agreement may have been suspended since the token was issued), recording the
end of a session, and recording that a peer left. `Hooks` bundles them so an
app (or a test) can pass its own; the defaults are below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.teleconsult.tokens import JoinGrant
from shared.platform import Platform

IceServers = Callable[[Platform, JoinGrant], Awaitable[list[dict[str, Any]]]]
"""RTCIceServer dictionaries (W3C WebRTC §4.2.1) for the peer's `welcome`."""
EntryCheck = Callable[[Platform, JoinGrant], Awaitable[None]]
"""Raises a `JisrError` (with its `refusal`, which the socket audits) to keep the peer out."""
EndSession = Callable[[Platform, JoinGrant, str, str], Awaitable[None]]
"""Records the end (outcome, note) on behalf of the host; raises a `JisrError` to refuse."""
PeerLeft = Callable[[Platform, JoinGrant], Awaitable[None]]


async def settings_ice_servers(platform: Platform, grant: JoinGrant) -> list[dict[str, Any]]:
    """The configured STUN servers; never a public default.

    TURN needs per-peer credentials (`turn.py`); without them a browser
    refuses the whole list, so TURN URLs are only given with credentials.
    """
    del grant
    stun = platform.settings.stun_urls
    return [{"urls": list(stun)}] if stun else []


async def no_entry_check(platform: Platform, grant: JoinGrant) -> None:
    """The join token alone decides (it was issued after the full check)."""
    del platform, grant


async def no_end_record(platform: Platform, grant: JoinGrant, outcome: str, note: str) -> None:
    del platform, grant, outcome, note


async def no_left_record(platform: Platform, grant: JoinGrant) -> None:
    del platform, grant


@dataclass(frozen=True, slots=True)
class Hooks:
    ice_servers: IceServers = settings_ice_servers
    check_entry: EntryCheck = no_entry_check
    end_session: EndSession = no_end_record
    peer_left: PeerLeft = no_left_record
