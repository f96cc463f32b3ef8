"""HTTP routes of visiting missions: publish, list, read with the patient list, cancel."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from services.referral.missions import schemas as s
from services.referral.missions import service
from shared.db import utcnow
from shared.identity.deps import CurrentUser, PlatformDep, Session
from shared.pagination import Page, Paging

router = APIRouter(tags=["missions"])


@router.post("/api/missions", response_model=s.MissionRead, status_code=status.HTTP_201_CREATED)
async def publish(
    session: Session, platform: PlatformDep, caller: CurrentUser, data: s.MissionCreate
) -> s.MissionRead:
    """Publish a visiting mission (coordinators of the provider or the host).

    The agreement between them must have a visiting_mission line with the
    provider as provider and the host as requester; a refusal names the rule.
    """
    now = utcnow()
    mission = await service.create(session, caller, data=data, now=now)
    secret = platform.settings.pseudonym_secret.encode()
    return await service.read(session, caller, mission, secret=secret, now=now)


@router.get("/api/missions", response_model=Page[s.MissionSummary])
async def list_missions(
    session: Session,
    caller: CurrentUser,
    paging: Paging,
    when: Annotated[
        Literal["upcoming", "past"] | None,
        Query(description="upcoming: not over yet, soonest first; past: over, latest first"),
    ] = None,
    status_: Annotated[s.MissionStatus | None, Query(alias="status")] = None,
) -> Page[s.MissionSummary]:
    """Missions the caller's institution sends a team on or hosts, with their booked places."""
    today = await service.local_today(session, caller, utcnow())
    rows, pagination = await service.list_missions(
        session, caller, paging=paging, when=when, status=status_, today=today
    )
    return Page(items=await service.summaries(session, caller, rows), pagination=pagination)


@router.get("/api/missions/{mission_id}", response_model=s.MissionRead)
async def get_mission(
    session: Session, platform: PlatformDep, caller: CurrentUser, mission_id: int
) -> s.MissionRead:
    """One mission with its patient list and outcomes; the patients as the caller's side may see them."""
    mission = await service.get(session, caller, mission_id)
    secret = platform.settings.pseudonym_secret.encode()
    return await service.read(session, caller, mission, secret=secret, now=utcnow())


@router.post("/api/missions/{mission_id}/cancel", response_model=s.MissionCancelled)
async def cancel(
    session: Session,
    platform: PlatformDep,
    caller: CurrentUser,
    mission_id: int,
    body: s.MissionCancel,
) -> s.MissionCancelled:
    """Cancel a planned mission; the answer lists the booked referrals that must be rescheduled."""
    now = utcnow()
    mission, waiting = await service.cancel(
        session, caller, mission_id=mission_id, reason=body.reason, now=now
    )
    secret = platform.settings.pseudonym_secret.encode()
    read = await service.read(session, caller, mission, secret=secret, now=now)
    return s.MissionCancelled(
        **read.model_dump(),
        to_reschedule=[r.id for r in waiting],
        to_reschedule_count=len(waiting),
    )
