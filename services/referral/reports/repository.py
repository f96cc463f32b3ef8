"""Every query of the activity report: ledger rows, the referrals behind them, their offers.

Rows come back as plain frozen dataclasses, so the aggregation in `service`
is pure and unit-tested without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral.referrals.models import Referral, ReferralOffer
from shared.registry.models import UsageEntry

CHUNK = 500
"""Ids per IN list: well under SQLite's and PostgreSQL's parameter limits."""


@dataclass(frozen=True, slots=True)
class Usage:
    """One ledger row: a unit of the agreement's coverage held by a piece of work."""

    state: str
    service: str
    specialty: str | None
    units: int
    occurred_at: datetime
    resource_type: str
    resource_id: str


@dataclass(frozen=True, slots=True)
class ReferralFacts:
    id: int
    status: str
    outcome: str | None


@dataclass(frozen=True, slots=True)
class Offer:
    id: int
    referral_id: int
    offered_at: datetime
    responded_at: datetime | None
    outcome: str
    paused_s: int


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for i in range(0, len(ids), CHUNK):
        yield list(ids[i : i + CHUNK])


async def usage(
    session: AsyncSession, agreement_id: int, *, start: datetime, end: datetime
) -> list[Usage]:
    """The agreement's ledger rows that occurred in [start, end)."""
    rows = await session.scalars(
        select(UsageEntry)
        .where(
            UsageEntry.agreement_id == agreement_id,
            UsageEntry.occurred_at >= start,
            UsageEntry.occurred_at < end,
        )
        .order_by(UsageEntry.occurred_at, UsageEntry.id)
    )
    return [
        Usage(
            state=u.state,
            service=u.service,
            specialty=u.specialty,
            units=u.units,
            occurred_at=u.occurred_at,
            resource_type=u.resource_type,
            resource_id=u.resource_id,
        )
        for u in rows
    ]


async def referrals(session: AsyncSession, ids: Iterable[int]) -> dict[int, ReferralFacts]:
    """Status and recorded outcome of each referral."""
    found: dict[int, ReferralFacts] = {}
    for chunk in _chunks(sorted(set(ids))):
        rows = await session.execute(
            select(Referral.id, Referral.status, Referral.outcome).where(Referral.id.in_(chunk))
        )
        for rid, status, outcome in rows.all():
            found[int(rid)] = ReferralFacts(int(rid), str(status), outcome)
    return found


def _offer(row: ReferralOffer) -> Offer:
    return Offer(
        id=row.id,
        referral_id=row.referral_id,
        offered_at=row.offered_at,
        responded_at=row.responded_at,
        outcome=row.outcome,
        paused_s=row.paused_s,
    )


async def offers_of(
    session: AsyncSession, agreement_id: int, referral_ids: Iterable[int]
) -> list[Offer]:
    """Every offer of these referrals made under the agreement."""
    found: list[Offer] = []
    for chunk in _chunks(sorted(set(referral_ids))):
        rows = await session.scalars(
            select(ReferralOffer).where(
                ReferralOffer.agreement_id == agreement_id, ReferralOffer.referral_id.in_(chunk)
            )
        )
        found += [_offer(r) for r in rows]
    return sorted(found, key=lambda o: o.id)


async def answered_offers(
    session: AsyncSession, agreement_id: int, *, start: datetime, end: datetime
) -> list[Offer]:
    """Offers made under the agreement in [start, end) that the provider accepted or declined."""
    rows = await session.scalars(
        select(ReferralOffer)
        .where(
            ReferralOffer.agreement_id == agreement_id,
            ReferralOffer.offered_at >= start,
            ReferralOffer.offered_at < end,
            ReferralOffer.outcome.in_(["accepted", "declined"]),
            ReferralOffer.responded_at.is_not(None),
        )
        .order_by(ReferralOffer.id)
    )
    return [_offer(r) for r in rows]
