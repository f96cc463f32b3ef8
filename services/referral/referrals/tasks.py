"""Work of referrals off the request: re-offers, imaging reports, teleconsult outcomes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.referral.referrals import repository as repo
from services.referral.referrals import service
from services.referral.referrals.models import Referral, ReferralEvent
from shared.db import utcnow
from shared.identity.models import User
from shared.notifications import service as notifications
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


IMAGING_REPORT_EVENT = "imaging_report"


async def _record_once(
    platform: Platform, referral_id: int, event: ReferralEvent, *, key: str, notice: dict[str, Any]
) -> bool:
    """Add `event` to the referral's timeline unless an event of its kind already carries the
    same `key`, and tell the referrer; the referral row is locked so that two deliveries of
    one message add one event. Answers whether this run added it."""
    async with platform.database.transaction() as session:
        referral = await session.get(Referral, referral_id, with_for_update=True)
        if referral is None:
            return False
        for past in await repo.events(session, referral.id):
            if past.kind == event.kind and past.data.get(key) == event.data[key]:
                return False
        event.referral_id = referral.id
        session.add(event)
        await session.flush()
        author = await session.get(User, referral.created_by_id)
        if author is not None:
            await notifications.notify(
                session,
                [author],
                event.kind,
                resource_type=service.RESOURCE,
                resource_id=referral.id,
                params={"referral": referral.id, **notice},
            )
    return True


async def record_imaging_report(
    platform: Platform, *, referral_id: int, share_id: int, report: dict[str, Any]
) -> bool:
    """Put a signed imaging report on the referral's timeline and tell its referrer, once.

    The imaging service sends the report's summary (`report_id`, `author_id`, `author_name`,
    `institution_id`, `signed_at`, `impression`). Answers whether this run added it.
    """
    event = ReferralEvent(
        at=datetime.fromisoformat(str(report["signed_at"])),
        kind=IMAGING_REPORT_EVENT,
        actor_id=report.get("author_id"),
        actor_name=report.get("author_name"),
        institution_id=report.get("institution_id"),
        data={
            "report_id": int(report["report_id"]),
            "share_id": share_id,
            "impression": report.get("impression", ""),
        },
    )
    notice = {
        "author": report.get("author_name", ""),
        "impression": report.get("impression", ""),
    }
    return await _record_once(platform, referral_id, event, key="report_id", notice=notice)


@celery_app.task(name="referrals.record_imaging_report_task")
def record_imaging_report_task(referral_id: int, share_id: int, report: dict[str, Any]) -> bool:
    """Deliver an imaging report into the referral's timeline (sent by the imaging service)."""
    return run_async(
        lambda platform: record_imaging_report(
            platform, referral_id=referral_id, share_id=share_id, report=report
        )
    )


TELECONSULT_EVENT = "teleconsult"


async def record_teleconsult(
    platform: Platform, *, referral_id: int, teleconsult_id: int, summary: dict[str, Any]
) -> bool:
    """Put an ended teleconsult's outcome and duration on the referral's timeline, once.

    The teleconsult service sends the session's summary (`outcome`, `note`, `started_at`,
    `ended_at`, `duration_s`, `actor_id`, `actor_name`, `institution_id`); the referrer is
    told. Answers whether this run added it.
    """
    duration_s = summary.get("duration_s")
    event = ReferralEvent(
        at=datetime.fromisoformat(str(summary["ended_at"])),
        kind=TELECONSULT_EVENT,
        actor_id=summary.get("actor_id"),
        actor_name=summary.get("actor_name"),
        institution_id=summary.get("institution_id"),
        data={
            "teleconsult_id": teleconsult_id,
            "outcome": str(summary["outcome"]),
            "started_at": summary.get("started_at"),
            "ended_at": summary["ended_at"],
            "duration_s": duration_s,
            "note": summary.get("note", ""),
        },
    )
    notice = {
        "author": summary.get("actor_name") or "",
        "outcome": {"id": f"teleconsult.outcome.{summary['outcome']}"},
        "duration": {"id": "teleconsult.minutes", "minutes": round(int(duration_s or 0) / 60)},
        "note": summary.get("note", ""),
    }
    return await _record_once(platform, referral_id, event, key="teleconsult_id", notice=notice)


@celery_app.task(name="referrals.record_teleconsult_task")
def record_teleconsult_task(referral_id: int, teleconsult_id: int, summary: dict[str, Any]) -> bool:
    """Deliver a teleconsult's outcome into the referral's timeline (sent by the teleconsult service)."""
    return run_async(
        lambda platform: record_teleconsult(
            platform, referral_id=referral_id, teleconsult_id=teleconsult_id, summary=summary
        )
    )
