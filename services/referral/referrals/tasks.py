"""Scheduled work of referrals: re-offering referrals whose provider did not answer in time."""

from __future__ import annotations

from datetime import datetime

from services.referral.referrals import repository as repo
from services.referral.referrals import service
from shared.db import utcnow
from shared.platform import Platform
from shared.tasks import celery_app, run_async


async def escalate_overdue(platform: Platform, *, now: datetime) -> dict[int, str]:
    """Each overdue referral in a transaction of its own, so one failure does not hold back the rest."""
    async with platform.database.transaction() as session:
        due = await repo.overdue(session, now)
    done: dict[int, str] = {}
    for referral_id in due:
        async with platform.database.transaction() as session:
            result = await service.escalate(session, referral_id, now=now)
        if result is not None:
            done[referral_id] = result
    return done


@celery_app.task(name="referrals.escalate_overdue_task")
def escalate_overdue_task(now: str | None = None) -> dict[int, str]:
    """Re-offer overdue referrals and notify the coordinators, once; `now` (ISO) is for tests."""
    at = datetime.fromisoformat(now) if now else utcnow()
    return run_async(lambda platform: escalate_overdue(platform, now=at))
