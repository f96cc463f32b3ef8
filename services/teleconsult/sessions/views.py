"""Read models of sessions: each participant's slot in their own time zone, and the caller's."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.teleconsult.sessions import repository as repo
from services.teleconsult.sessions import rules
from services.teleconsult.sessions import schemas as s
from services.teleconsult.sessions.models import Participant, Teleconsult


def slot(row: Teleconsult, timezone: str) -> s.SlotRead:
    local = rules.local_slot(row.starts_at, row.ends_at, timezone)
    return s.SlotRead(
        timezone=local.timezone,
        starts_at=local.starts_at,
        ends_at=local.ends_at,
        utc_offset=local.utc_offset,
    )


def participant_read(row: Teleconsult, p: Participant, zones: dict[int, str]) -> s.ParticipantRead:
    return s.ParticipantRead(
        id=p.id,
        peer=p.peer,
        user_id=p.user_id,
        kind=p.kind,
        host=p.host,
        display_name=p.display_name,
        institution_id=p.institution_id,
        lang=p.lang,
        slot=slot(row, zones.get(p.institution_id, "UTC")),
        invitation_pending=p.secret_hash is not None and p.secret_used_at is None,
        first_joined_at=p.first_joined_at,
        last_joined_at=p.last_joined_at,
        left_at=p.left_at,
        joins=p.joins,
    )


def read(
    row: Teleconsult, participants: Sequence[Participant], zones: dict[int, str], caller_zone: str
) -> s.TeleconsultRead:
    return s.TeleconsultRead(
        id=row.id,
        referral_id=row.referral_id,
        origin_id=row.origin_id,
        provider_id=row.provider_id,
        specialty=row.specialty,
        status=row.status,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        duration_minutes=int((row.ends_at - row.starts_at).total_seconds()) // 60,
        low_bandwidth=row.low_bandwidth,
        host_id=row.host_id,
        your_slot=slot(row, caller_zone),
        participants=[participant_read(row, p, zones) for p in participants],
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        duration_s=row.duration_s,
        outcome=row.outcome,
        outcome_note=row.outcome_note,
        cancelled_at=row.cancelled_at,
        cancel_reason=row.cancel_reason,
    )


async def read_many(
    session: AsyncSession, rows: Sequence[Teleconsult], *, caller_institution: int
) -> list[s.TeleconsultRead]:
    """Read models of `rows`, with one query for participants and one for time zones."""
    people = await repo.participants_of(session, (r.id for r in rows))
    institutions = {caller_institution} | {
        p.institution_id for group in people.values() for p in group
    }
    zones = await repo.institution_zones(session, institutions)
    caller_zone = zones.get(caller_institution, "UTC")
    return [read(r, people.get(r.id, []), zones, caller_zone) for r in rows]


async def read_one(
    session: AsyncSession, row: Teleconsult, *, caller_institution: int
) -> s.TeleconsultRead:
    [found] = await read_many(session, [row], caller_institution=caller_institution)
    return found
