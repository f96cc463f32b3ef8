"""Every query of teleconsults, visibility included.

A session is visible to the users of the two institutions of its referral (its
origin and its provider). The referral belongs to the referral service, which
this service does not import: `referral_facts` reads the few columns it needs
through literal table clauses, read-only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, column, func, or_, select, table
from sqlalchemy.ext.asyncio import AsyncSession

from services.teleconsult.sessions.models import (
    Consent,
    Participant,
    QualitySample,
    Recording,
    Teleconsult,
)
from shared.identity.models import User
from shared.registry.models import Institution

_referrals = table(
    "referrals",
    column("id"),
    column("origin_id"),
    column("provider_id"),
    column("specialty"),
    column("status"),
)


@dataclass(frozen=True, slots=True)
class ReferralFacts:
    """What a teleconsult needs to know of its referral, as the referral service stored it."""

    id: int
    origin_id: int
    provider_id: int | None
    specialty: str
    status: str


async def referral_facts(
    session: AsyncSession, *, referral_id: int, institution_id: int
) -> ReferralFacts | None:
    """The referral if `institution_id` is its origin or its provider; else None."""
    row = (
        await session.execute(
            select(_referrals).where(
                _referrals.c.id == referral_id,
                or_(
                    _referrals.c.origin_id == institution_id,
                    _referrals.c.provider_id == institution_id,
                ),
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return ReferralFacts(
        id=int(row.id),
        origin_id=int(row.origin_id),
        provider_id=row.provider_id,
        specialty=str(row.specialty),
        status=str(row.status),
    )


def visible(institution_id: int) -> Select[Teleconsult]:
    """Sessions an institution takes part in: as the referral's origin or its provider."""
    return select(Teleconsult).where(
        or_(Teleconsult.origin_id == institution_id, Teleconsult.provider_id == institution_id)
    )


def listing(institution_id: int, *, referral_id: int | None = None) -> Select[Teleconsult]:
    query = visible(institution_id)
    if referral_id is not None:
        query = query.where(Teleconsult.referral_id == referral_id)
    return query.order_by(Teleconsult.starts_at.desc(), Teleconsult.id.desc())


async def get(
    session: AsyncSession,
    *,
    session_id: int,
    institution_id: int | None,
    for_update: bool = False,
) -> Teleconsult | None:
    """The session if `institution_id` takes part (any session when None: platform callers)."""
    query = (select(Teleconsult) if institution_id is None else visible(institution_id)).where(
        Teleconsult.id == session_id
    )
    if for_update:
        query = query.with_for_update()
    found: Teleconsult | None = await session.scalar(query)
    return found


async def participants(session: AsyncSession, session_id: int) -> list[Participant]:
    rows = await session.scalars(
        select(Participant).where(Participant.teleconsult_id == session_id).order_by(Participant.id)
    )
    return list(rows)


async def participants_of(
    session: AsyncSession, session_ids: Iterable[int]
) -> dict[int, list[Participant]]:
    ids = set(session_ids)
    found: dict[int, list[Participant]] = {i: [] for i in ids}
    if not ids:
        return found
    rows = await session.scalars(
        select(Participant).where(Participant.teleconsult_id.in_(ids)).order_by(Participant.id)
    )
    for row in rows:
        found[row.teleconsult_id].append(row)
    return found


async def participant_for_user(
    session: AsyncSession, *, session_id: int, user_id: int
) -> Participant | None:
    found: Participant | None = await session.scalar(
        select(Participant).where(
            Participant.teleconsult_id == session_id, Participant.user_id == user_id
        )
    )
    return found


async def participant_by_secret(
    session: AsyncSession, *, session_id: int, secret_hash: str
) -> Participant | None:
    found: Participant | None = await session.scalar(
        select(Participant).where(
            Participant.teleconsult_id == session_id, Participant.secret_hash == secret_hash
        )
    )
    return found


async def users_by_id(session: AsyncSession, ids: Iterable[int]) -> dict[int, User]:
    wanted = set(ids)
    if not wanted:
        return {}
    return {u.id: u for u in await session.scalars(select(User).where(User.id.in_(wanted)))}


async def institution_zones(session: AsyncSession, ids: Iterable[int]) -> dict[int, str]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = await session.execute(
        select(Institution.id, Institution.timezone).where(Institution.id.in_(wanted))
    )
    return {int(i): str(tz) for i, tz in rows}


async def consents(session: AsyncSession, session_id: int) -> dict[int, Consent]:
    """Recording consents of a session, by participant id."""
    rows = await session.scalars(
        select(Consent).where(Consent.teleconsult_id == session_id, Consent.purpose == "recording")
    )
    return {row.participant_id: row for row in rows}


async def last_sample_at(session: AsyncSession, participant_id: int) -> datetime | None:
    found: datetime | None = await session.scalar(
        select(func.max(QualitySample.received_at)).where(
            QualitySample.participant_id == participant_id
        )
    )
    return found


async def samples(session: AsyncSession, session_id: int) -> list[QualitySample]:
    rows = await session.scalars(
        select(QualitySample)
        .where(QualitySample.teleconsult_id == session_id)
        .order_by(QualitySample.id)
    )
    return list(rows)


async def recordings(session: AsyncSession, session_id: int) -> list[Recording]:
    rows = await session.scalars(
        select(Recording).where(Recording.teleconsult_id == session_id).order_by(Recording.id)
    )
    return list(rows)


async def recording(
    session: AsyncSession, *, session_id: int, recording_id: int
) -> Recording | None:
    found: Recording | None = await session.scalar(
        select(Recording).where(
            Recording.teleconsult_id == session_id, Recording.id == recording_id
        )
    )
    return found
