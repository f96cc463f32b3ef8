"""Visiting missions: publishing them, and booking referrals onto their patient lists."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral.missions.models import Mission
from services.referral.referrals.models import Referral
from services.referral.workflow import Status
from shared import audit
from shared.identity.deps import Caller
from shared.problems import Conflict, NotFound, Unprocessable
from shared.registry.models import Institution

BOOKED = (Status.SCHEDULED.value, Status.COMPLETED.value, Status.CLOSED.value)


async def booked(session: AsyncSession, mission_id: int) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Referral)
        .where(Referral.mission_id == mission_id, Referral.status.in_(BOOKED))
    )
    return int(count or 0)


async def book(
    session: AsyncSession, caller: Caller, *, referral: Referral, mission_id: int
) -> Mission:
    """Put a referral on a mission's patient list; the mission's row lock makes capacity exact."""
    mission = await session.scalar(
        select(Mission).where(Mission.id == mission_id).with_for_update()
    )
    if mission is None or caller.institution_id not in (mission.provider_id, mission.host_id):
        raise NotFound(f"no mission {mission_id}")
    if mission.provider_id != referral.provider_id or mission.host_id != referral.origin_id:
        raise Unprocessable("this mission is not the provider's visit to the referring hospital")
    if mission.status != "planned":
        raise Conflict(f"mission {mission.id} is {mission.status}", rule="mission_not_planned")
    if mission.specialties and referral.specialty not in mission.specialties:
        raise Unprocessable(f"mission {mission.id} does not cover {referral.specialty}")
    taken = await booked(session, mission.id)
    if referral.mission_id == mission.id and referral.status in BOOKED:
        return mission
    if taken >= mission.capacity:
        raise Conflict(
            f"mission {mission.id} is full ({mission.capacity} patients)",
            rule="mission_full",
            refusal=audit.Refusal(
                caller.actor,
                "mission.book",
                rule="mission_full",
                resource_type="mission",
                resource_id=mission.id,
            ),
        )
    return mission


def starts_at(mission: Mission, host_timezone: str = "UTC") -> datetime:
    return datetime.combine(mission.starts_on, time(8, 0), tzinfo=ZoneInfo(host_timezone))


async def host_timezone(session: AsyncSession, mission: Mission) -> str:
    host = await session.get(Institution, mission.host_id)
    return host.timezone if host else "UTC"
