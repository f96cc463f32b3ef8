"""Who is asking about a session, and the refusals every teleconsult route shares.

Users reach a session through their institution (the referral's origin or
provider; anyone else gets the 404 of a missing row, audited). A patient has
no account and reaches it through its session pass (`tokens`, purpose "pass"):
an `Attendee` is either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.teleconsult.sessions import repository as repo
from services.teleconsult.sessions.models import Participant, Teleconsult
from shared import audit
from shared.entitlements.decide import Decision
from shared.entitlements.model import ServiceKind, UsageState
from shared.i18n import translate
from shared.identity.deps import Caller
from shared.problems import Conflict, EntitlementRefused, Forbidden, NotFound
from shared.registry import repository as registry_repo
from shared.registry import service as registry

RESOURCE = "teleconsult"
QUOTA_EXHAUSTED = "quota_exhausted"


def refusal(
    actor: audit.Actor,
    action: str,
    rule: str,
    session_id: int | None,
    *,
    counterpart_id: int | None = None,
    reasons: Sequence[str] = (),
) -> audit.Refusal:
    return audit.Refusal(
        actor,
        action,
        rule=rule,
        resource_type=RESOURCE,
        resource_id=session_id,
        counterpart_id=counterpart_id,
        reasons=reasons,
    )


def words(rule: str, lang: str | None, fallback: str = "", **params: object) -> str:
    """The refusal of `rule` in the reader's language (`teleconsult.refused.*`), else `fallback`."""
    key = f"teleconsult.refused.{rule}"
    text = translate(key, lang or "en", **params)
    return fallback if text == key and fallback else text


def forbidden(
    actor: audit.Actor,
    action: str,
    rule: str,
    detail: str,
    session_id: int | None,
    *,
    lang: str | None = None,
    **params: object,
) -> Forbidden:
    """403 naming `rule`, audited once the request's transaction is over.

    With `lang`, the detail is the rule's own words in that language (`words`).
    """
    text = words(rule, lang, detail, **params) if lang else detail
    return Forbidden(text, rule=rule, refusal=refusal(actor, action, rule, session_id))


def conflict(
    actor: audit.Actor,
    action: str,
    rule: str,
    detail: str,
    session_id: int | None,
    *,
    lang: str | None = None,
    **params: object,
) -> Conflict:
    """409 naming `rule` (the session's state refuses the action), audited."""
    text = words(rule, lang, detail, **params) if lang else detail
    return Conflict(text, rule=rule, refusal=refusal(actor, action, rule, session_id))


def not_found(
    actor: audit.Actor, action: str, session_id: int, *, lang: str | None = None
) -> NotFound:
    return NotFound(
        words("not_visible", lang, id=session_id),
        refusal=refusal(actor, action, "not_visible", session_id),
    )


async def visible_session(
    session: AsyncSession,
    caller: Caller,
    session_id: int,
    *,
    action: str,
    for_update: bool = False,
) -> Teleconsult:
    """The session if the caller's institution takes part in it; else 404, audited."""
    row = await repo.get(
        session, session_id=session_id, institution_id=caller.institution_id, for_update=for_update
    )
    if row is None:
        raise not_found(caller.actor, action, session_id, lang=caller.lang)
    return row


@dataclass(frozen=True, slots=True)
class Attendee:
    """A user (with an access token) or a patient (with a session pass) asking about a session."""

    caller: Caller | None = None
    guest_participant_id: int | None = None
    guest_session_id: int | None = None
    guest_lang: str = "en"

    @property
    def actor(self) -> audit.Actor:
        if self.caller is not None:
            return self.caller.actor
        return audit.Actor(username=f"guest:{self.guest_participant_id}")

    @property
    def lang(self) -> str:
        return self.caller.lang if self.caller is not None else self.guest_lang


async def attendee_session(
    session: AsyncSession,
    who: Attendee,
    session_id: int,
    *,
    action: str,
    for_update: bool = False,
) -> Teleconsult:
    """The session for a user of its institutions, or for the guest whose pass names it."""
    if who.caller is not None:
        return await visible_session(
            session, who.caller, session_id, action=action, for_update=for_update
        )
    row = None
    if who.guest_session_id == session_id:
        row = await repo.get(
            session, session_id=session_id, institution_id=None, for_update=for_update
        )
    if row is None:
        raise not_found(who.actor, action, session_id, lang=who.lang)
    return row


async def attendee_participant(
    session: AsyncSession, who: Attendee, row: Teleconsult, *, action: str
) -> Participant:
    """The caller's own participant row in the session; 403 `not_invited` when they have none."""
    found: Participant | None
    if who.caller is not None:
        found = await repo.participant_for_user(
            session, session_id=row.id, user_id=who.caller.user_id
        )
    else:
        found = await session.get(Participant, who.guest_participant_id)
        if found is not None and found.teleconsult_id != row.id:
            found = None
    if found is None:
        raise forbidden(
            who.actor,
            action,
            "not_invited",
            "only the invited participants take part in this teleconsultation",
            row.id,
            lang=who.lang,
        )
    return found


def counterpart(row: Teleconsult, institution_id: int | None) -> int:
    """The other institution of the session, seen from `institution_id`."""
    return row.provider_id if institution_id == row.origin_id else row.origin_id


async def entitled(
    session: AsyncSession,
    *,
    origin_id: int,
    provider_id: int,
    specialty: str,
    at: datetime,
    actor: audit.Actor,
    action: str,
    lang: str,
    resource: tuple[str, int],
    holds_unit: bool = False,
) -> Decision:
    """`decide()` for teleconsultation from the origin to the provider; 403 naming the rule
    (with its reasons, audited) when the agreement does not allow it.

    `holds_unit`: the work already holds a unit of the quota (a scheduled session that is
    joined), so a quota used up by that very unit and its siblings does not refuse it.
    """
    decision = await registry.decide(
        session,
        requester=origin_id,
        provider=provider_id,
        service=ServiceKind.TELECONSULTATION,
        specialty=specialty,
        at=at,
    )
    if decision.allowed or (holds_unit and decision.rule == QUOTA_EXHAUSTED):
        return decision
    reasons = decision.explain(lang)
    raise EntitlementRefused(
        reasons[0] if reasons else decision.rule,
        rule=decision.rule,
        reasons=reasons,
        refusal=audit.Refusal(
            actor,
            action,
            rule=decision.rule,
            resource_type=resource[0],
            resource_id=resource[1],
            counterpart_id=provider_id if actor.institution_id == origin_id else origin_id,
            reasons=reasons,
        ),
    )


async def holds_unit(session: AsyncSession, row: Teleconsult) -> bool:
    """Whether the session still holds its unit of the quota (reserved or consumed)."""
    usage = await registry_repo.usage_for(session, RESOURCE, str(row.id))
    return any(u.state != UsageState.RELEASED.value for u in usage)
