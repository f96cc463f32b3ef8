"""Every registry query; visibility is part of the query, never a check after it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from shared.entitlements.model import UsageState
from shared.registry.models import Agreement, AgreementParty, CoverageLine, Institution, UsageEntry

HELD = (UsageState.RESERVED.value, UsageState.CONSUMED.value)


def institutions() -> Select[Institution]:
    return select(Institution).order_by(Institution.code)


async def institutions_by_id(session: AsyncSession, ids: Iterable[int]) -> dict[int, Institution]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = await session.scalars(select(Institution).where(Institution.id.in_(wanted)))
    return {row.id: row for row in rows}


async def institution_by_key(session: AsyncSession, key: str) -> Institution | None:
    """An institution by id ("12") or by code ("FR-PARIS-APHP")."""
    if key.isdigit():
        return await session.get(Institution, int(key))
    return await session.scalar(select(Institution).where(Institution.code == key.upper()))


def agreements(
    *, visible_to: int | None, status: str | None = None, party: int | None = None
) -> Select[Agreement]:
    """Agreements in code order; `visible_to` None means every agreement (the operator)."""
    query = select(Agreement).order_by(Agreement.valid_from.desc(), Agreement.code)
    if visible_to is not None:
        query = query.where(Agreement.id.in_(_party_of(visible_to)))
    if party is not None:
        query = query.where(Agreement.id.in_(_party_of(party)))
    if status is not None:
        query = query.where(Agreement.status == status)
    return query


def _party_of(institution_id: int) -> Select[int]:
    return select(AgreementParty.agreement_id).where(
        AgreementParty.institution_id == institution_id
    )


async def agreement(
    session: AsyncSession, agreement_id: int, *, visible_to: int | None
) -> Agreement | None:
    query = agreements(visible_to=visible_to).where(Agreement.id == agreement_id)
    row: Agreement | None = await session.scalar(query)
    return row


async def agreement_by_code(session: AsyncSession, code: str) -> Agreement | None:
    return await session.scalar(select(Agreement).where(Agreement.code == code))


async def renewals_of(session: AsyncSession, agreement_ids: Iterable[int]) -> list[Agreement]:
    ids = list(agreement_ids)
    if not ids:
        return []
    return list(await session.scalars(select(Agreement).where(Agreement.renews_id.in_(ids))))


async def agreements_between(
    session: AsyncSession, requester: int, provider: int
) -> list[Agreement]:
    """Agreements naming both institutions, with the renewals of those (which may supersede them)."""
    a, b = aliased(AgreementParty), aliased(AgreementParty)
    query = (
        select(Agreement)
        .join(a, a.agreement_id == Agreement.id)
        .join(b, b.agreement_id == Agreement.id)
        .where(a.institution_id == requester, b.institution_id == provider)
        .order_by(Agreement.id)
    )
    found = list(await session.scalars(query))
    known = {row.id for row in found}
    extra = [row for row in await renewals_of(session, known) if row.id not in known]
    return found + extra


async def agreements_of(session: AsyncSession, institution_id: int) -> list[Agreement]:
    """Every agreement naming the institution, with their renewals, in one statement."""
    named = _party_of(institution_id)
    query = (
        select(Agreement)
        .where(or_(Agreement.id.in_(named), Agreement.renews_id.in_(named)))
        .order_by(Agreement.id)
    )
    return list(await session.scalars(query))


async def line_for_update(session: AsyncSession, line_id: int) -> CoverageLine | None:
    """Lock a coverage line row: concurrent consumers of one line queue here (PostgreSQL)."""
    return await session.scalar(
        select(CoverageLine).where(CoverageLine.id == line_id).with_for_update()
    )


async def held_units(
    session: AsyncSession, line_id: int, start: datetime, end: datetime | None
) -> int:
    query = select(func.coalesce(func.sum(UsageEntry.units), 0)).where(
        UsageEntry.line_id == line_id, UsageEntry.state.in_(HELD), UsageEntry.occurred_at >= start
    )
    if end is not None:
        query = query.where(UsageEntry.occurred_at < end)
    return int(await session.scalar(query) or 0)


async def held_units_by_line(
    session: AsyncSession, windows: Iterable[tuple[int, datetime, datetime | None]]
) -> dict[int, int]:
    """Units held on each line within its own window, in one grouped query."""
    conditions = []
    for line_id, start, end in windows:
        condition = and_(UsageEntry.line_id == line_id, UsageEntry.occurred_at >= start)
        conditions.append(
            condition if end is None else and_(condition, UsageEntry.occurred_at < end)
        )
    if not conditions:
        return {}
    rows = await session.execute(
        select(UsageEntry.line_id, func.sum(UsageEntry.units))
        .where(UsageEntry.state.in_(HELD), or_(*conditions))
        .group_by(UsageEntry.line_id)
    )
    return {int(line): int(units or 0) for line, units in rows.all()}


async def usage_for(
    session: AsyncSession, resource_type: str, resource_id: str
) -> list[UsageEntry]:
    query = select(UsageEntry).where(
        UsageEntry.resource_type == resource_type, UsageEntry.resource_id == resource_id
    )
    return list(await session.scalars(query))
