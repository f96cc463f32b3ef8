"""What signalling asks of the sessions service, each behind one function.

The socket needs four things it does not decide itself: the ICE servers a
peer is given, whether a peer holding a valid join token may still enter,
recording the end of a session, and recording that a peer left. `Hooks`
bundles them so an app (or a test of the socket alone) can pass its own; the
defaults below read the session's row, each in a short transaction of its own,
only when a peer connects, ends or leaves (never per relayed message).

The entry check is `decide()` again, at the socket: a join token lives
`join_token_ttl_s` (and opens one socket), and an agreement suspended (or a
session cancelled or ended) since it was issued closes the door. A session that already holds its
quota unit is not refused for the quota it holds (`access.entitled`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.teleconsult import turn
from services.teleconsult.sessions import access
from services.teleconsult.sessions import repository as repo
from services.teleconsult.sessions import service as sessions
from services.teleconsult.sessions.models import SessionStatus
from services.teleconsult.tokens import JoinGrant
from shared import audit
from shared.db import utcnow
from shared.identity.models import User
from shared.platform import Platform

IceServers = Callable[[Platform, JoinGrant], Awaitable[list[dict[str, Any]]]]
"""RTCIceServer dictionaries (W3C WebRTC §4.2.1) for the peer's `welcome`."""
EntryCheck = Callable[[Platform, JoinGrant], Awaitable[None]]
"""Raises a `JisrError` (with its `refusal`, which the socket audits) to keep the peer out."""
EndSession = Callable[[Platform, JoinGrant, str, str], Awaitable[None]]
"""Records the end (outcome, note) on behalf of the host; raises a `JisrError` to refuse."""
PeerLeft = Callable[[Platform, JoinGrant], Awaitable[None]]

JOIN_ACTION = "teleconsult.join"
CLOSED = (SessionStatus.ENDED.value, SessionStatus.CANCELLED.value)


async def session_ice_servers(platform: Platform, grant: JoinGrant) -> list[dict[str, Any]]:
    """STUN, and TURN with coturn REST-API credentials lasting as long as the session (`turn.py`)."""
    async with platform.database.transaction() as session:
        row = await repo.get(session, session_id=grant.session_id, institution_id=None)
    if row is None:
        return []
    return turn.ice_servers(platform.settings, grant.peer, ends_at=row.ends_at)


async def _actor(session: AsyncSession, grant: JoinGrant) -> audit.Actor:
    kind, _, rest = grant.peer.partition(":")
    user = await session.get(User, int(rest)) if kind == "user" and rest.isdigit() else None
    if user is not None:
        return audit.Actor(user.id, user.username, user.institution_id)
    return audit.Actor(username=grant.peer[:120])


async def session_entry_check(platform: Platform, grant: JoinGrant) -> None:
    """Refuse (audited) a peer whose session is gone, closed, or no longer entitled."""
    async with platform.database.transaction() as session:
        actor = await _actor(session, grant)
        row = await repo.get(session, session_id=grant.session_id, institution_id=None)
        if row is None:
            raise access.not_found(actor, JOIN_ACTION, grant.session_id)
        if row.status in CLOSED:
            raise access.conflict(
                actor,
                JOIN_ACTION,
                f"session_{row.status}",
                f"the teleconsultation is {row.status}",
                row.id,
            )
        await access.entitled(
            session,
            origin_id=row.origin_id,
            provider_id=row.provider_id,
            specialty=row.specialty,
            at=utcnow(),
            actor=actor,
            action=JOIN_ACTION,
            lang=grant.lang,
            resource=(access.RESOURCE, row.id),
            holds_unit=await access.holds_unit(session, row),
        )


async def record_end(platform: Platform, grant: JoinGrant, outcome: str, note: str) -> None:
    """`sessions.end`: duration, outcome, quota and the referral's timeline."""
    async with platform.database.transaction() as session:
        await sessions.end(
            session,
            session_id=grant.session_id,
            ended_by=grant.peer,
            outcome=outcome,
            note=note,
            lang=grant.lang,
        )


async def record_left(platform: Platform, grant: JoinGrant) -> None:
    async with platform.database.transaction() as session:
        await sessions.mark_left(session, session_id=grant.session_id, peer=grant.peer)


@dataclass(frozen=True, slots=True)
class Hooks:
    ice_servers: IceServers = session_ice_servers
    check_entry: EntryCheck = session_entry_check
    end_session: EndSession = record_end
    peer_left: PeerLeft = record_left
