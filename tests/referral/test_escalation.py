"""Response-time escalation, with a controllable clock: on the in-process worker and on Redis."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from services.referral.referrals.models import Referral
from services.referral.referrals.tasks import escalate_overdue
from shared import tasks
from shared.notifications.models import Notification
from shared.platform import Platform
from shared.settings import Settings
from tests.celery_worker import redis_worker, run_task
from tests.referral.conftest import World


async def state(platform: Platform, rid: int) -> tuple[str, str | None]:
    async with platform.database.transaction() as session:
        row = await session.get(Referral, rid)
        assert row is not None
        return row.status, (await _code(session, row.provider_id))


async def _code(session: object, institution_id: int | None) -> str | None:
    from shared.registry.models import Institution

    row = await session.get(Institution, institution_id) if institution_id else None  # type: ignore[attr-defined]
    return row.code if row else None


async def overdue_notices(platform: Platform) -> list[tuple[int, str]]:
    async with platform.database.transaction() as session:
        rows = await session.scalars(
            select(Notification).where(Notification.kind == "referral_overdue")
        )
        return sorted((n.user_id, n.lang) for n in rows)


async def test_an_unanswered_referral_is_offered_to_the_next_provider_once(
    world: World, platform: Platform
) -> None:
    w = world
    ref = (await w.submit()).json()
    due = datetime.fromisoformat(ref["due_at"])
    assert await escalate_overdue(platform, now=due - timedelta(minutes=1)) == {}
    assert await escalate_overdue(platform, now=due + timedelta(minutes=1)) == {
        ref["id"]: "FR-PARIS-APHP"
    }
    assert await state(platform, ref["id"]) == ("offered", "FR-PARIS-APHP")
    notified = {user for user, _ in await overdue_notices(platform)}
    assert notified == {w.origin_coordinator.id, w.setif_coordinator.id}
    assert await escalate_overdue(platform, now=due + timedelta(minutes=2)) == {}  # once
    assert len(await overdue_notices(platform)) == 2
    history = (
        await w.client.get(f"/api/referrals/{ref['id']}/history", headers=w.h(w.referrer))
    ).json()
    assert [e["kind"] for e in history][-2:] == ["escalated", "offered"]
    late = (
        await w.client.get(f"/api/referrals/{ref['id']}", headers=w.h(w.setif_specialist))
    ).json()
    assert late["actions"] == []  # Sétif lost it


async def test_when_nobody_answers_the_referral_expires(world: World, platform: Platform) -> None:
    w = world
    ref = (await w.submit()).json()
    first_due = datetime.fromisoformat(ref["due_at"])
    await escalate_overdue(platform, now=first_due + timedelta(hours=1))
    second = (await w.client.get(f"/api/referrals/{ref['id']}", headers=w.h(w.referrer))).json()
    second_due = datetime.fromisoformat(second["due_at"])
    assert await escalate_overdue(platform, now=second_due + timedelta(hours=1)) == {
        ref["id"]: "expired"
    }
    assert await state(platform, ref["id"]) == ("expired", None)


async def test_the_clock_stops_while_the_referrer_owes_information(
    world: World, platform: Platform
) -> None:
    w = world
    ref = (await w.submit()).json()
    due = datetime.fromisoformat(ref["due_at"])
    await w.act(w.setif_specialist, ref["id"], "request-info", {"question": "Weight?"})
    assert await escalate_overdue(platform, now=due + timedelta(days=3)) == {}
    assert await state(platform, ref["id"]) == ("info_requested", "DZ-SETIF-CHU")


async def test_beat_escalates_on_the_in_process_worker(world: World, platform: Platform) -> None:
    w = world
    ref = (await w.submit()).json()
    due = datetime.fromisoformat(ref["due_at"])
    tasks.use_platform(platform)
    worker = tasks.EmbeddedWorker(beat=False)
    worker.start()
    try:
        async with platform.database.transaction() as session:
            tasks.send_after_commit(
                session, "referrals.escalate_overdue_task", (due + timedelta(hours=1)).isoformat()
            )
        deadline = time.monotonic() + 30
        while (await state(platform, ref["id"]))[1] != "FR-PARIS-APHP":
            assert time.monotonic() < deadline, "the in-process worker did not escalate within 30 s"
            await asyncio.sleep(0.1)
    finally:
        worker.stop()
        tasks.configure(Settings())


async def test_a_worker_on_redis_escalates_the_same_way(
    world: World, platform: Platform, signing_key: Path, tmp_path: Path
) -> None:
    w = world
    ref = (await w.submit()).json()
    later = (datetime.fromisoformat(ref["due_at"]) + timedelta(hours=1)).isoformat()
    async with redis_worker(platform, signing_key, tmp_path) as client:
        outcome = await run_task(client, "referrals.escalate_overdue_task", later)
    assert outcome == {str(ref["id"]): "FR-PARIS-APHP"}
    assert await state(platform, ref["id"]) == ("offered", "FR-PARIS-APHP")
