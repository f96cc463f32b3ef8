"""Every referral query. A referral is visible to its origin and to every institution it was offered to."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Exists, Select, case, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral.referrals.models import (
    Attachment,
    IdempotencyKey,
    Patient,
    Referral,
    ReferralEvent,
    ReferralOffer,
)
from services.referral.workflow import OPEN_AT_PROVIDER, Status
from shared.identity.models import Role, User

URGENCY_ORDER = case(
    (Referral.urgency == "emergency", 0), (Referral.urgency == "urgent", 1), else_=2
)


def _offered_to(institution_id: int) -> Exists:
    return exists().where(
        ReferralOffer.referral_id == Referral.id, ReferralOffer.provider_id == institution_id
    )


def visible(institution_id: int) -> Select[Referral]:
    return select(Referral).where(
        or_(
            Referral.origin_id == institution_id,
            Referral.provider_id == institution_id,
            _offered_to(institution_id),
        )
    )


async def get(
    session: AsyncSession, referral_id: int, *, institution_id: int, for_update: bool = False
) -> Referral | None:
    query = visible(institution_id).where(Referral.id == referral_id)
    if for_update:
        query = query.with_for_update(of=Referral)
    row: Referral | None = await session.scalar(query)
    return row


def worklist(
    institution_id: int,
    *,
    box: str,
    status: Iterable[str] = (),
    urgency: str | None = None,
    specialty: str | None = None,
) -> Select[Referral]:
    """Inbox (held by the institution as provider), outbox (sent), or all it may see.

    Most urgent first, then the longest waiting.
    """
    if box == "inbox":
        query = select(Referral).where(Referral.provider_id == institution_id)
    elif box == "outbox":
        query = select(Referral).where(Referral.origin_id == institution_id)
    else:
        query = visible(institution_id)
    statuses = list(status)
    if statuses:
        query = query.where(Referral.status.in_(statuses))
    if urgency:
        query = query.where(Referral.urgency == urgency)
    if specialty:
        query = query.where(Referral.specialty == specialty)
    waiting = func.coalesce(Referral.offered_at, Referral.created_at)
    return query.order_by(URGENCY_ORDER, waiting, Referral.id)


async def patient_by_local_id(
    session: AsyncSession, institution_id: int, local_id: str
) -> Patient | None:
    row: Patient | None = await session.scalar(
        select(Patient).where(
            Patient.institution_id == institution_id, Patient.local_id == local_id
        )
    )
    return row


async def offers(session: AsyncSession, referral_id: int) -> list[ReferralOffer]:
    rows = await session.scalars(
        select(ReferralOffer)
        .where(ReferralOffer.referral_id == referral_id)
        .order_by(ReferralOffer.id)
    )
    return list(rows)


async def current_offer(session: AsyncSession, referral: Referral) -> ReferralOffer | None:
    row: ReferralOffer | None = await session.scalar(
        select(ReferralOffer)
        .where(ReferralOffer.referral_id == referral.id, ReferralOffer.outcome == "pending")
        .order_by(ReferralOffer.id.desc())
    )
    return row


async def events(session: AsyncSession, referral_id: int) -> list[ReferralEvent]:
    rows = await session.scalars(
        select(ReferralEvent)
        .where(ReferralEvent.referral_id == referral_id)
        .order_by(ReferralEvent.id)
    )
    return list(rows)


async def attachments(session: AsyncSession, referral_id: int) -> list[Attachment]:
    rows = await session.scalars(
        select(Attachment).where(Attachment.referral_id == referral_id).order_by(Attachment.id)
    )
    return list(rows)


async def open_queues(session: AsyncSession, provider_ids: Iterable[int]) -> dict[int, int]:
    ids = list(provider_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Referral.provider_id, func.count())
        .where(
            Referral.provider_id.in_(ids), Referral.status.in_([s.value for s in OPEN_AT_PROVIDER])
        )
        .group_by(Referral.provider_id)
    )
    return {int(p): int(n) for p, n in rows.all() if p is not None}


async def median_response_hours(
    session: AsyncSession, provider_ids: Iterable[int], *, since: datetime
) -> dict[int, float]:
    """Median time from offer to answer (accepted or declined), net of paused time, per provider."""
    ids = list(provider_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(
            ReferralOffer.provider_id,
            ReferralOffer.offered_at,
            ReferralOffer.responded_at,
            ReferralOffer.paused_s,
        ).where(
            ReferralOffer.provider_id.in_(ids),
            ReferralOffer.offered_at >= since,
            ReferralOffer.outcome.in_(["accepted", "declined"]),
        )
    )
    hours: dict[int, list[float]] = {}
    for provider, offered, responded, paused in rows.all():
        if responded is not None:
            hours.setdefault(provider, []).append(
                ((responded - offered).total_seconds() - paused) / 3600
            )
    return {p: statistics.median(values) for p, values in hours.items()}


async def specialist_languages(
    session: AsyncSession, provider_ids: Iterable[int]
) -> dict[int, frozenset[str]]:
    ids = list(provider_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(User.institution_id, User.languages, User.roles).where(
            User.institution_id.in_(ids), User.disabled.is_(False)
        )
    )
    spoken: dict[int, set[str]] = {}
    clinical = {Role.SPECIALIST.value, Role.RADIOLOGIST.value}
    for institution, languages, roles in rows.all():
        if clinical & set(roles or ()):
            spoken.setdefault(institution, set()).update(languages or ())
    return {p: frozenset(v) for p, v in spoken.items()}


async def overdue(session: AsyncSession, now: datetime, limit: int = 500) -> list[int]:
    """Offered referrals whose provider's answer is late and not yet escalated."""
    rows = await session.scalars(
        select(Referral.id)
        .where(
            Referral.status == Status.OFFERED.value,
            Referral.due_at < now,
            Referral.escalated_at.is_(None),
        )
        .order_by(Referral.due_at)
        .limit(limit)
    )
    return list(rows)


async def idempotency_key(session: AsyncSession, user_id: int, key: str) -> IdempotencyKey | None:
    row: IdempotencyKey | None = await session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    )
    return row
