"""Scheduling, listing, cancelling and ending teleconsults.

A teleconsult is scheduled for a referral that its provider accepted (or
scheduled), by a clinician of either side, when `decide()` allows
teleconsultation from the referral's origin to its provider; it holds one unit
of that coverage line in the usage ledger until it ends:

- completed: the unit is consumed;
- no_show or technical_failure: the unit is released (`rules.quota_effect`:
  no consultation was given);
- cancelled: the unit is released.

Ending records the duration from the first join (`started_at`) and sends the
outcome to the referral's timeline after the commit (`OUTCOME_TASK`).

Joining lives in `joining`, quality in `quality`, consent and recordings in
`recording`; the functions the signalling and media code call are re-exported
here: `end`, `mark_left`, `recorder_grant`, `recording_allowed`, `store_recording`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.teleconsult.sessions import repository as repo
from services.teleconsult.sessions import rules
from services.teleconsult.sessions import schemas as s
from services.teleconsult.sessions.access import (
    RESOURCE,
    Attendee,
    attendee_participant,
    conflict,
    counterpart,
    entitled,
    forbidden,
    not_found,
    visible_session,
    words,
)
from services.teleconsult.sessions.joining import recorder_grant
from services.teleconsult.sessions.models import (
    Outcome,
    Participant,
    ParticipantKind,
    SessionStatus,
    Teleconsult,
)
from services.teleconsult.sessions.recording import recording_allowed, store_recording
from shared import audit
from shared.db import utcnow
from shared.entitlements.model import ServiceKind, UsageState
from shared.identity.deps import Caller, require
from shared.identity.models import Role, User
from shared.pagination import PageParams, Pagination, paginate
from shared.problems import Conflict, NotFound, Unprocessable
from shared.registry import ledger
from shared.settings import Settings
from shared.tasks import send_after_commit

__all__ = [
    "OUTCOME_TASK",
    "cancel",
    "create",
    "end",
    "get",
    "list_sessions",
    "mark_left",
    "recorder_grant",
    "recording_allowed",
    "store_recording",
    "update",
]

CLINICAL_ROLES = (Role.REFERRING_PHYSICIAN, Role.SPECIALIST, Role.RADIOLOGIST)
SCHEDULABLE_REFERRALS = frozenset({"accepted", "scheduled"})
OUTCOME_TASK = "referrals.record_teleconsult_task"
NOTE_MAX = 500
"""How much of the closing note travels to the referral's timeline."""


@dataclass(frozen=True, slots=True)
class Created:
    row: Teleconsult
    patient_link: s.PatientLink | None


def _lang(user: User) -> str:
    return next((lang for lang in user.languages if lang in ("en", "fr", "ar")), "en")


async def _invitees(
    session: AsyncSession,
    caller: Caller,
    *,
    body: s.TeleconsultCreate,
    origin_id: int,
    provider_id: int,
    max_participants: int,
) -> list[tuple[User, ParticipantKind]]:
    """The users to invite besides the host, checked against the referral's two institutions."""
    interpreter = body.interpreter if body.interpreter != caller.user_id else None
    wanted = [u for u in dict.fromkeys(body.participants) if u not in (caller.user_id, interpreter)]
    users = await repo.users_by_id(session, [*wanted, *([interpreter] if interpreter else [])])
    for user_id in [*wanted, *([interpreter] if interpreter else [])]:
        user = users.get(user_id)
        if user is None or user.disabled:
            raise Unprocessable(
                words("unknown_participant", caller.lang, user=user_id), rule="unknown_participant"
            )
        if user.institution_id not in (origin_id, provider_id):
            raise forbidden(
                caller.actor,
                "teleconsult.create",
                "participant_not_a_party",
                f"user {user_id} belongs to neither institution of the referral",
                None,
                lang=caller.lang,
                user=user_id,
            )
    total = 1 + len(wanted) + (1 if interpreter else 0) + (1 if body.patient else 0)
    if total > max_participants:
        raise Unprocessable(
            words("too_many_participants", caller.lang, max=max_participants),
            rule="too_many_participants",
        )
    sides = {caller.institution_id} | {users[u].institution_id for u in wanted}
    if sides != {origin_id, provider_id}:
        raise Unprocessable(words("both_sides_required", caller.lang), rule="both_sides_required")

    def kind(user: User) -> ParticipantKind:
        if user.institution_id == origin_id:
            return ParticipantKind.REFERRING
        return ParticipantKind.SPECIALIST

    chosen = [(users[u], kind(users[u])) for u in wanted]
    if interpreter:
        chosen.append((users[interpreter], ParticipantKind.INTERPRETER))
    return chosen


async def create(
    session: AsyncSession,
    caller: Caller,
    *,
    settings: Settings,
    body: s.TeleconsultCreate,
    now: datetime | None = None,
) -> Created:
    """Schedule a teleconsult for a referral (see the module docstring); the caller hosts it."""
    now = now or utcnow()
    action = "teleconsult.create"
    require(caller, *CLINICAL_ROLES, action=action)
    referral = await repo.referral_facts(
        session, referral_id=body.referral_id, institution_id=caller.institution_id
    )
    if referral is None:
        raise NotFound(words("no_referral", caller.lang, id=body.referral_id))
    if referral.status not in SCHEDULABLE_REFERRALS or referral.provider_id is None:
        rule = "referral_not_accepted"
        raise Conflict(
            words(rule, caller.lang),
            rule=rule,
            status_now=referral.status,
            refusal=audit.Refusal(
                caller.actor, action, rule=rule, resource_type="referral", resource_id=referral.id
            ),
        )
    origin_id, provider_id = referral.origin_id, referral.provider_id
    counterpart = provider_id if caller.institution_id == origin_id else origin_id
    decision = await entitled(
        session,
        origin_id=origin_id,
        provider_id=provider_id,
        specialty=referral.specialty,
        at=now,
        actor=caller.actor,
        action=action,
        lang=caller.lang,
        resource=("referral", referral.id),
    )
    ends_at = body.starts_at + timedelta(minutes=body.duration_minutes)
    if ends_at <= now:
        raise Unprocessable(words("slot_in_the_past", caller.lang), rule="slot_in_the_past")
    invitees = await _invitees(
        session,
        caller,
        body=body,
        origin_id=origin_id,
        provider_id=provider_id,
        max_participants=settings.teleconsult_max_participants,
    )
    row = Teleconsult(
        referral_id=referral.id,
        origin_id=origin_id,
        provider_id=provider_id,
        agreement_id=decision.agreement_id,
        line_id=decision.line_id,
        specialty=referral.specialty,
        status=SessionStatus.SCHEDULED.value,
        starts_at=body.starts_at,
        ends_at=ends_at,
        low_bandwidth=body.low_bandwidth,
        host_id=caller.user_id,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    await ledger.hold(
        session,
        caller.actor,
        requester=origin_id,
        provider=provider_id,
        service=ServiceKind.TELECONSULTATION,
        specialty=referral.specialty,
        resource_type=RESOURCE,
        resource_id=str(row.id),
        state=UsageState.RESERVED,
        at=now,
        lang=caller.lang,
    )
    host_kind = (
        ParticipantKind.REFERRING
        if caller.institution_id == origin_id
        else ParticipantKind.SPECIALIST
    )
    host = await session.get(User, caller.user_id)
    if host is None:  # the caller's own row, read for this request: it cannot vanish
        raise NotFound("no such user")
    for user, kind in [(host, host_kind), *invitees]:
        session.add(
            Participant(
                teleconsult_id=row.id,
                user_id=user.id,
                institution_id=user.institution_id,
                kind=kind.value,
                host=user is host,
                display_name=user.display_name,
                lang=_lang(user),
            )
        )
    link = None
    if body.patient is not None:
        secret = secrets.token_urlsafe(32)
        patient = Participant(
            teleconsult_id=row.id,
            institution_id=origin_id,
            kind=ParticipantKind.PATIENT.value,
            display_name=body.patient.display_name,
            lang=body.patient.language,
            secret_hash=rules.secret_hash(secret),
        )
        session.add(patient)
        await session.flush()
        link = s.PatientLink(
            participant_id=patient.id,
            secret=secret,
            path=f"/api/teleconsults/{row.id}/join/guest",
        )
    await session.flush()
    await audit.record(
        session,
        caller.actor,
        action,
        resource_type=RESOURCE,
        resource_id=row.id,
        counterpart_id=counterpart,
        outcome="allowed",
        rule=decision.rule,
        reasons=decision.explain(caller.lang),
        details={
            "referral": referral.id,
            "agreement": decision.agreement_code,
            "line": decision.line_id,
            "participants": 1 + len(invitees),
            "patient_invited": link is not None,
        },
    )
    return Created(row, link)


async def list_sessions(
    session: AsyncSession, caller: Caller, *, paging: PageParams, referral_id: int | None = None
) -> tuple[list[Teleconsult], Pagination]:
    """Sessions the caller's institution takes part in, latest slot first."""
    query = repo.listing(caller.institution_id, referral_id=referral_id)
    rows, pagination = await paginate(session, query, paging)
    return list(rows), pagination


async def get(
    session: AsyncSession, caller: Caller, *, session_id: int, action: str = "teleconsult.read"
) -> Teleconsult:
    """The session if the caller's institution takes part; else 404, audited under `action`."""
    return await visible_session(session, caller, session_id, action=action)


async def cancel(
    session: AsyncSession,
    caller: Caller,
    *,
    session_id: int,
    reason: str,
    now: datetime | None = None,
) -> Teleconsult:
    """An invited clinician calls off a session that has not begun; its unit is released."""
    action = "teleconsult.cancel"
    row = await visible_session(session, caller, session_id, action=action, for_update=True)
    await attendee_participant(session, Attendee(caller=caller), row, action=action)
    if row.status != SessionStatus.SCHEDULED.value:
        raise conflict(
            caller.actor,
            action,
            "session_not_scheduled",
            f"a teleconsultation that is {row.status} cannot be cancelled",
            row.id,
            lang=caller.lang,
        )
    row.status, row.cancelled_at, row.cancel_reason = (
        SessionStatus.CANCELLED.value,
        now or utcnow(),
        reason,
    )
    await ledger.release(session, caller.actor, resource_type=RESOURCE, resource_id=str(row.id))
    await audit.record(
        session,
        caller.actor,
        action,
        resource_type=RESOURCE,
        resource_id=row.id,
        counterpart_id=counterpart(row, caller.institution_id),
        details={"reason": reason},
    )
    return row


async def update(
    session: AsyncSession, caller: Caller, *, session_id: int, body: s.TeleconsultUpdate
) -> Teleconsult:
    """The host switches low-bandwidth mode (audio and low-resolution video) on or off."""
    action = "teleconsult.update"
    row = await visible_session(session, caller, session_id, action=action, for_update=True)
    if row.host_id != caller.user_id:
        raise forbidden(
            caller.actor,
            action,
            "host_only",
            "only the host changes the session",
            row.id,
            lang=caller.lang,
        )
    if row.status in (SessionStatus.ENDED.value, SessionStatus.CANCELLED.value):
        raise conflict(
            caller.actor,
            action,
            "session_over",
            f"the session is {row.status}",
            row.id,
            lang=caller.lang,
        )
    row.low_bandwidth = body.low_bandwidth
    await audit.record(
        session,
        caller.actor,
        action,
        resource_type=RESOURCE,
        resource_id=row.id,
        details={"low_bandwidth": body.low_bandwidth},
    )
    return row


def _user_id(peer: str) -> int | None:
    kind, _, rest = peer.partition(":")
    return int(rest) if kind == "user" and rest.isdigit() else None


async def end(
    session: AsyncSession,
    *,
    session_id: int,
    ended_by: str,
    outcome: str,
    note: str = "",
    now: datetime | None = None,
    lang: str | None = None,
) -> Teleconsult:
    """End a session with its outcome; the host or a participant of the provider may.

    `ended_by` is the peer as in `tokens.JoinGrant.peer` (`user:<id>`; a guest or the
    recorder may not end). Records the end and the duration since the first join,
    consumes or releases the quota unit (`rules.quota_effect`) and sends the outcome to
    the referral's timeline after the commit. Ending an ended session returns it
    unchanged (the socket's `end` and the REST route may both arrive). Refusals carry
    their audit record (`exc.refusal`) for the caller to write after its rollback, and
    their detail in `lang` (English by default). Flushes only.
    """
    action = "teleconsult.end"
    now = now or utcnow()
    row = await repo.get(session, session_id=session_id, institution_id=None, for_update=True)
    user_id = _user_id(ended_by)
    user = await session.get(User, user_id) if user_id is not None else None
    actor = (
        audit.Actor(user.id, user.username, user.institution_id)
        if user is not None
        else audit.Actor(username=ended_by[:120])
    )
    lang = lang or "en"
    if row is None:
        raise not_found(actor, action, session_id, lang=lang)
    participant = (
        await repo.participant_for_user(session, session_id=row.id, user_id=user.id)
        if user is not None
        else None
    )
    if participant is None or not (
        participant.host or participant.institution_id == row.provider_id
    ):
        raise forbidden(
            actor,
            action,
            "host_or_provider_only",
            "only the host or a participant of the provider ends a teleconsultation",
            row.id,
            lang=lang,
        )
    if row.status == SessionStatus.ENDED.value:
        return row
    if row.status == SessionStatus.CANCELLED.value:
        raise conflict(
            actor, action, "session_cancelled", "the session was cancelled", row.id, lang=lang
        )
    try:
        result = Outcome(outcome)
    except ValueError as exc:
        raise Unprocessable(
            words("unknown_outcome", lang, outcome=outcome), rule="unknown_outcome"
        ) from exc
    if result is Outcome.COMPLETED and row.started_at is None:
        raise conflict(
            actor,
            action,
            "never_started",
            "nobody joined this teleconsultation: it cannot be completed",
            row.id,
            lang=lang,
        )
    row.status, row.ended_at, row.ended_by = SessionStatus.ENDED.value, now, ended_by
    row.outcome, row.outcome_note = result.value, note or None
    for p in await repo.participants(session, row.id):
        joined = p.last_joined_at
        if joined is not None and (p.left_at is None or p.left_at < joined):
            p.left_at = now
    effect = rules.quota_effect(result)
    if effect is rules.QuotaEffect.CONSUME:
        await ledger.consume(session, actor, resource_type=RESOURCE, resource_id=str(row.id))
    else:
        await ledger.release(session, actor, resource_type=RESOURCE, resource_id=str(row.id))
    await session.flush()
    await audit.record(
        session,
        actor,
        action,
        resource_type=RESOURCE,
        resource_id=row.id,
        counterpart_id=counterpart(row, actor.institution_id),
        details={"outcome": result.value, "duration_s": row.duration_s, "quota": effect.value},
    )
    send_after_commit(
        session,
        OUTCOME_TASK,
        row.referral_id,
        row.id,
        summary={
            "outcome": result.value,
            "note": (note or "")[:NOTE_MAX],
            "started_at": row.started_at.isoformat() if row.started_at else None,
            "ended_at": now.isoformat(),
            "duration_s": row.duration_s,
            "actor_id": actor.user_id,
            "actor_name": user.display_name if user is not None else None,
            "institution_id": actor.institution_id,
        },
    )
    return row


async def mark_left(
    session: AsyncSession, *, session_id: int, peer: str, now: datetime | None = None
) -> bool:
    """Record that `peer` left the room (for the report); False when no such participant."""
    user_id = _user_id(peer)
    participant: Participant | None = None
    if user_id is not None:
        participant = await repo.participant_for_user(
            session, session_id=session_id, user_id=user_id
        )
    elif peer.startswith("guest:") and peer[6:].isdigit():
        participant = await session.get(Participant, int(peer[6:]))
        if participant is not None and participant.teleconsult_id != session_id:
            participant = None
    if participant is None:
        return False
    participant.left_at = now or utcnow()
    await session.flush()
    return True
