"""Ending a session: outcome, duration from the first join, quota, the referral's timeline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.referral.referrals import tasks as referral_tasks
from services.teleconsult.sessions import service
from services.teleconsult.sessions.models import Teleconsult
from shared import audit, tasks
from shared.notifications.models import Notification
from shared.problems import Forbidden
from shared.settings import Settings
from tests.teleconsult.conftest import Clinic


async def held(clinic: Clinic) -> dict[str, Any]:
    """A session both the referrer (host) and the specialist joined."""
    created = await clinic.scheduled()
    for user in (clinic.referrer, clinic.specialist):
        assert (await clinic.join(user, created["id"])).status_code == 200
    return created


async def end(clinic: Clinic, sid: int, user: Any, outcome: str, note: str = "") -> Any:
    return await clinic.post(
        user, f"/api/teleconsults/{sid}/end", {"outcome": outcome, "note": note}
    )


async def timeline(clinic: Clinic) -> list[dict[str, Any]]:
    response = await clinic.get(clinic.referrer, f"/api/referrals/{clinic.referral_id}/history")
    assert response.status_code == 200, response.text
    return [e for e in response.json() if e["kind"] == "teleconsult"]


async def test_a_completed_session_consumes_its_unit_and_reaches_the_timeline(
    clinic: Clinic,
) -> None:
    created = await held(clinic)
    sid = created["id"]
    ended = await end(clinic, sid, clinic.specialist, "completed", "Surgery indicated at 8.")
    assert ended.status_code == 200, ended.text
    body = ended.json()
    assert (body["status"], body["outcome"], body["outcome_note"]) == (
        "ended",
        "completed",
        "Surgery indicated at 8.",
    )
    assert body["duration_s"] is not None and body["duration_s"] >= 0
    assert await clinic.usage(sid) == ["consumed"]
    assert all(p["left_at"] for p in body["participants"])
    [event] = await clinic.audit("teleconsult.end")
    assert event.details["quota"] == "consume"

    summary = {
        "outcome": "completed",
        "note": "Surgery indicated at 8.",
        "started_at": body["started_at"],
        "ended_at": body["ended_at"],
        "duration_s": 1260,
        "actor_id": clinic.specialist.id,
        "actor_name": clinic.specialist.display_name,
        "institution_id": clinic.aphp.id,
    }
    first = await referral_tasks.record_teleconsult(
        clinic.platform, referral_id=clinic.referral_id, teleconsult_id=sid, summary=summary
    )
    second = await referral_tasks.record_teleconsult(
        clinic.platform, referral_id=clinic.referral_id, teleconsult_id=sid, summary=summary
    )
    assert (first, second) == (True, False)
    [entry] = await timeline(clinic)
    assert entry["data"]["teleconsult_id"] == sid
    assert (entry["data"]["outcome"], entry["data"]["duration_s"]) == ("completed", 1260)
    async with clinic.platform.database.transaction() as session:
        [note] = await session.scalars(
            select(Notification).where(
                Notification.user_id == clinic.referrer.id, Notification.kind == "teleconsult"
            )
        )
    assert note.lang == "fr"
    assert note.title == f"Téléconsultation pour la demande n° {clinic.referral_id} : tenue"
    assert "21 min" in note.body


@pytest.mark.parametrize("outcome", ["no_show", "technical_failure"])
async def test_a_session_not_held_gives_its_unit_back(clinic: Clinic, outcome: str) -> None:
    created = await held(clinic)
    ended = await end(clinic, created["id"], clinic.referrer, outcome)
    assert ended.status_code == 200, ended.text
    assert ended.json()["outcome"] == outcome
    assert await clinic.usage(created["id"]) == ["released"]


async def test_the_duration_runs_from_the_first_join(clinic: Clinic) -> None:
    created = await held(clinic)
    async with clinic.platform.database.transaction() as session:
        row = await session.get(Teleconsult, created["id"])
        assert row is not None and row.started_at is not None
        started = row.started_at
        ended = await service.end(
            session,
            session_id=created["id"],
            ended_by=f"user:{clinic.referrer.id}",
            outcome="completed",
            now=started + timedelta(minutes=23, seconds=5),
        )
        assert ended.duration_s == 23 * 60 + 5


async def test_the_socket_s_end_and_the_rest_end_agree(clinic: Clinic) -> None:
    """The signalling code calls `service.end` with the peer of the host's grant."""
    created = await held(clinic)
    sid = created["id"]
    with pytest.raises(Forbidden) as refused:
        async with clinic.platform.database.transaction() as session:
            await service.end(session, session_id=sid, ended_by="guest:1", outcome="completed")
    # As the problem handler does, and as the socket must: the refusal after the rollback.
    assert refused.value.refusal is not None
    await audit.write_refusal(clinic.platform.database, refused.value.refusal)
    async with clinic.platform.database.transaction() as session:
        row = await service.end(
            session, session_id=sid, ended_by=f"user:{clinic.referrer.id}", outcome="completed"
        )
        assert row.ended_by == f"user:{clinic.referrer.id}"
    again = await end(clinic, sid, clinic.specialist, "no_show")
    assert again.status_code == 200
    assert again.json()["outcome"] == "completed"  # the first end stands
    assert await clinic.usage(sid) == ["consumed"]
    assert await clinic.refusals("teleconsult.end") == ["host_or_provider_only"]


async def test_who_may_end(clinic: Clinic) -> None:
    created = await clinic.scheduled(participants=[clinic.specialist.id, clinic.interpreter.id])
    sid = created["id"]
    origin_guest = await end(clinic, sid, clinic.interpreter, "no_show")
    assert (origin_guest.status_code, origin_guest.json()["rule"]) == (
        403,
        "host_or_provider_only",
    )
    outsider = await end(clinic, sid, clinic.provider_radiologist, "no_show")
    assert (outsider.status_code, outsider.json()["rule"]) == (403, "host_or_provider_only")
    assert (await end(clinic, sid, clinic.stranger, "no_show")).status_code == 404
    never = await end(clinic, sid, clinic.referrer, "completed")
    assert (never.status_code, never.json()["rule"]) == (409, "never_started")
    bad = await end(clinic, sid, clinic.referrer, "finished")
    assert bad.status_code == 422
    assert (await end(clinic, sid, clinic.specialist, "no_show")).status_code == 200
    assert await clinic.refusals("teleconsult.end") == [
        "host_or_provider_only",
        "host_or_provider_only",
        "not_visible",
        "never_started",
    ]


@pytest.fixture
def embedded_worker(clinic: Clinic) -> Iterator[tasks.EmbeddedWorker]:
    """The in-process worker on this test's platform, over an emptied in-memory queue.

    kombu's memory transport keeps its queues at class level, for the whole test
    process: the ends of earlier tests (no worker was running) are still queued, with
    referral and session ids that every fresh database gives out again. Delivered
    first, one of them would fill this referral's timeline with another test's outcome
    and the idempotent task would then drop this one.
    """
    tasks.use_platform(clinic.platform)
    tasks.celery_app.control.purge()
    worker = tasks.EmbeddedWorker(beat=False)
    worker.start()
    yield worker
    worker.stop()
    tasks.celery_app.control.purge()
    tasks.configure(Settings())


@pytest.mark.usefixtures("embedded_worker")
async def test_the_in_process_worker_delivers_the_outcome_after_commit(clinic: Clinic) -> None:
    created = await held(clinic)
    assert (await end(clinic, created["id"], clinic.referrer, "completed")).status_code == 200
    deadline = time.monotonic() + 30
    while not await timeline(clinic):
        assert time.monotonic() < deadline, "the outcome did not reach the timeline"
        await asyncio.sleep(0.1)
    [entry] = await timeline(clinic)
    assert entry["data"]["outcome"] == "completed"
    assert entry["actor_name"] == clinic.referrer.display_name
