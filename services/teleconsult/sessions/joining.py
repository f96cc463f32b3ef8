"""Joining a session: the checks, then a join token and the ICE servers.

A join is refused (403 or 409, audited) when the caller is not invited, the
session is cancelled or ended, the time is outside its window (`rules.join_window`:
`teleconsult_join_early_s` before the slot to `teleconsult_overrun_s` after it), or
`decide()` no longer allows teleconsultation between the two institutions (an
agreement suspended since the session was scheduled). The first join starts the
session's clock.

Everyone but the host waits in the waiting room until the host admits them; the
recorder does not wait (it joins only once everyone who joined has consented).
A join that leaves everyone who joined consenting (someone who consented before
joining) starts the recorder after the commit, as a consent does.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.teleconsult import tokens, turn
from services.teleconsult.sessions import repository as repo
from services.teleconsult.sessions import rules
from services.teleconsult.sessions.access import (
    RESOURCE,
    Attendee,
    attendee_participant,
    attendee_session,
    conflict,
    counterpart,
    entitled,
    forbidden,
    holds_unit,
    not_found,
)
from services.teleconsult.sessions.models import Participant, SessionStatus, Teleconsult
from services.teleconsult.sessions.recording import recording_allowed, start_recorder_if_allowed
from shared import audit
from shared.db import utcnow
from shared.i18n import translate
from shared.platform import Platform
from shared.registry.models import Institution

WS_PATH = "/ws/teleconsults/{session_id}"
RECORDER_PEER = "recorder"


@dataclass(frozen=True, slots=True)
class JoinTicket:
    """The join response (`schemas.JoinRead`)."""

    token: str
    expires_in: int
    ice_servers: list[dict[str, Any]]
    ws_url: str
    role: str
    waiting: bool
    peer: str
    low_bandwidth: bool
    session_pass: str | None = None
    session_pass_expires_in: int | None = None


def ticket(
    platform: Platform, row: Teleconsult, grant: tokens.JoinGrant, *, waiting: bool
) -> JoinTicket:
    """Sign `grant` for `join_token_ttl_s` and hand it out with the peer's ICE servers."""
    settings = platform.settings
    token, ttl = tokens.issue(platform.keyring, settings, grant, ttl_s=settings.join_token_ttl_s)
    return JoinTicket(
        token=token,
        expires_in=ttl,
        ice_servers=turn.ice_servers(settings, grant.peer, ends_at=row.ends_at),
        ws_url=WS_PATH.format(session_id=row.id),
        role=grant.role.value,
        waiting=waiting,
        peer=grant.peer,
        low_bandwidth=row.low_bandwidth,
    )


def _window_closes(platform: Platform, row: Teleconsult) -> datetime:
    settings = platform.settings
    return rules.join_window(
        row.starts_at,
        row.ends_at,
        early_s=settings.teleconsult_join_early_s,
        overrun_s=settings.teleconsult_overrun_s,
    )[1]


async def _check(
    session: AsyncSession,
    platform: Platform,
    row: Teleconsult,
    *,
    actor: audit.Actor,
    action: str,
    lang: str,
    now: datetime,
) -> str:
    """Refuse a join outside the window or no longer entitled; returns the decision's rule."""
    settings = platform.settings
    rule = rules.join_refusal(
        now,
        status=SessionStatus(row.status),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        early_s=settings.teleconsult_join_early_s,
        overrun_s=settings.teleconsult_overrun_s,
    )
    if rule in ("session_cancelled", "session_ended"):
        raise conflict(
            actor, action, rule, f"the teleconsultation is {row.status}", row.id, lang=lang
        )
    if rule is not None:
        opens, closes = rules.join_window(
            row.starts_at,
            row.ends_at,
            early_s=settings.teleconsult_join_early_s,
            overrun_s=settings.teleconsult_overrun_s,
        )
        raise forbidden(
            actor,
            action,
            rule,
            f"the teleconsultation may be joined from {opens.isoformat()} to {closes.isoformat()}",
            row.id,
            lang=lang,
            opens=f"{opens:%Y-%m-%d %H:%M}",
            closes=f"{closes:%Y-%m-%d %H:%M}",
        )
    decision = await entitled(
        session,
        origin_id=row.origin_id,
        provider_id=row.provider_id,
        specialty=row.specialty,
        at=now,
        actor=actor,
        action=action,
        lang=lang,
        resource=(RESOURCE, row.id),
        holds_unit=await holds_unit(session, row),
    )
    return "allowed" if decision.allowed else "quota_held"


async def _admit(
    session: AsyncSession,
    platform: Platform,
    row: Teleconsult,
    participant: Participant,
    *,
    actor: audit.Actor,
    action: str,
    lang: str,
    now: datetime,
) -> JoinTicket:
    rule = await _check(session, platform, row, actor=actor, action=action, lang=lang, now=now)
    participant.first_joined_at = participant.first_joined_at or now
    participant.last_joined_at, participant.joins = now, participant.joins + 1
    if row.started_at is None:
        row.started_at, row.status = now, SessionStatus.IN_PROGRESS.value
    await session.flush()
    institution = await session.get(Institution, participant.institution_id)
    role = tokens.RoomRole.HOST if participant.host else tokens.RoomRole.PARTICIPANT
    grant = tokens.JoinGrant(
        session_id=row.id,
        peer=participant.peer,
        name=participant.display_name,
        institution=institution.name(participant.lang) if institution is not None else "",
        role=role,
        kind=participant.kind,
        lang=participant.lang,
    )
    await audit.record(
        session,
        actor,
        action,
        resource_type=RESOURCE,
        resource_id=row.id,
        counterpart_id=counterpart(row, participant.institution_id),
        outcome="allowed",
        rule=rule,
        details={"peer": participant.peer, "role": role.value, "joins": participant.joins},
    )
    start_recorder_if_allowed(session, row.id, allowed=await recording_allowed(session, row.id))
    return ticket(platform, row, grant, waiting=role is not tokens.RoomRole.HOST)


async def join(
    session: AsyncSession,
    who: Attendee,
    *,
    platform: Platform,
    session_id: int,
    now: datetime | None = None,
) -> JoinTicket:
    """An invited user (or a patient with its session pass, after a drop) joins (module docstring)."""
    action = "teleconsult.join"
    row = await attendee_session(session, who, session_id, action=action, for_update=True)
    participant = await attendee_participant(session, who, row, action=action)
    return await _admit(
        session,
        platform,
        row,
        participant,
        actor=who.actor,
        action=action,
        lang=who.lang if who.caller is not None else participant.lang,
        now=now or utcnow(),
    )


async def join_as_guest(
    session: AsyncSession,
    *,
    platform: Platform,
    session_id: int,
    secret: str,
    lang: str = "en",
    now: datetime | None = None,
) -> JoinTicket:
    """The patient joins with the one-time link secret, which this first join spends.

    A wrong secret or one already spent is refused (403, audited). With the join token
    the patient gets a session pass for the rest of the window (`tokens` module).
    """
    action = "teleconsult.join_guest"
    now = now or utcnow()
    anonymous = audit.Actor(username="guest")
    row = await repo.get(session, session_id=session_id, institution_id=None, for_update=True)
    if row is None:
        raise not_found(anonymous, action, session_id, lang=lang)
    participant = await repo.participant_by_secret(
        session, session_id=row.id, secret_hash=rules.secret_hash(secret)
    )
    if (
        participant is None
        or participant.secret_hash is None
        or not hmac.compare_digest(participant.secret_hash, rules.secret_hash(secret))
    ):
        raise forbidden(
            anonymous, action, "invalid_link", "this link is not valid", row.id, lang=lang
        )
    actor = audit.Actor(username=participant.peer)
    if participant.secret_used_at is not None:
        raise forbidden(
            actor,
            action,
            "link_used",
            "this link was already used; ask for a new one",
            row.id,
            lang=participant.lang,
        )
    ticket = await _admit(
        session,
        platform,
        row,
        participant,
        actor=actor,
        action=action,
        lang=participant.lang,
        now=now,
    )
    participant.secret_used_at = now
    await session.flush()
    closes = _window_closes(platform, row)
    pass_ttl = max(1, int((closes - now).total_seconds()))
    grant = tokens.JoinGrant(
        session_id=row.id,
        peer=participant.peer,
        name=participant.display_name,
        institution="",
        role=tokens.RoomRole.PARTICIPANT,
        kind=participant.kind,
        lang=participant.lang,
    )
    session_pass, pass_ttl = tokens.issue(
        platform.keyring, platform.settings, grant, ttl_s=pass_ttl, purpose="pass"
    )
    return replace(ticket, session_pass=session_pass, session_pass_expires_in=pass_ttl)


async def recorder_grant(
    session: AsyncSession, platform: Platform, *, session_id: int, now: datetime | None = None
) -> JoinTicket:
    """A join ticket for the server-side recorder (peer `recorder`, role `recorder`).

    Only for a session in progress whose joined participants have all consented to
    recording (`recording_allowed`); refused (409/403, audited as the platform) otherwise.
    The recorder does not wait to be admitted; its ICE servers are the platform's.
    """
    action = "teleconsult.recorder_join"
    now = now or utcnow()
    actor = audit.Actor(username="recorder")
    row = await repo.get(session, session_id=session_id, institution_id=None)
    if row is None:
        raise not_found(actor, action, session_id)
    if row.status != SessionStatus.IN_PROGRESS.value:
        raise conflict(
            actor, action, "session_not_in_progress", f"the session is {row.status}", row.id
        )
    if not await recording_allowed(session, row.id):
        raise forbidden(
            actor,
            action,
            "recording_not_consented",
            "every participant who joined must consent to recording",
            row.id,
        )
    grant = tokens.JoinGrant(
        session_id=row.id,
        peer=RECORDER_PEER,
        name=translate("teleconsult.recorder", "en"),
        institution="",
        role=tokens.RoomRole.RECORDER,
        kind="recorder",
        lang="en",
    )
    await audit.record(
        session,
        actor,
        action,
        resource_type=RESOURCE,
        resource_id=row.id,
        outcome="allowed",
        details={"at": now.isoformat()},
    )
    return ticket(platform, row, grant, waiting=False)
