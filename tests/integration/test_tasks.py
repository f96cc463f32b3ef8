"""Celery: the same task code on the in-process worker (with beat) and on a real Redis broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from shared import tasks
from shared.audit import AuditEvent
from shared.logs import request_id_var
from shared.platform import Platform
from shared.registry.models import Agreement
from shared.settings import Settings
from tests.celery_worker import redis_worker, run_task
from tests.factories import Factory


async def status_of(platform: Platform, agreement_id: int) -> str:
    async with platform.database.transaction() as session:
        row = await session.get(Agreement, agreement_id)
        assert row is not None
        return row.status


async def lapsed_and_current(factory: Factory) -> tuple[Agreement, Agreement]:
    a, b = await factory.institution(), await factory.institution()
    lapsed = await factory.agreement(
        a, b, valid_from=date(2016, 1, 1), valid_until=date(2019, 12, 31)
    )
    current = await factory.agreement(
        a, b, valid_from=date(2024, 1, 1), valid_until=date(2099, 12, 31)
    )
    return lapsed, current


@pytest.fixture
def embedded(platform: Platform) -> Iterator[tasks.EmbeddedWorker]:
    settings = platform.settings.model_copy(update={"expiry_check_interval_s": 1})
    tasks.use_platform(Platform(settings, platform.database, platform.keyring, None))
    worker = tasks.EmbeddedWorker(beat=True)
    worker.start()
    yield worker
    worker.stop()
    tasks.configure(Settings())


async def wait_until_expired(platform: Platform, agreement_id: int, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while await status_of(platform, agreement_id) != "expired":
        assert time.monotonic() < deadline, (
            f"agreement {agreement_id} not expired within {within_s} s"
        )
        await asyncio.sleep(0.1)


async def test_the_in_process_worker_runs_a_task_sent_after_commit(
    platform: Platform, factory: Factory
) -> None:
    tasks.use_platform(platform)
    worker = tasks.EmbeddedWorker(beat=False)
    worker.start()
    try:
        lapsed, current = await lapsed_and_current(factory)
        token = request_id_var.set("req-from-the-web")
        try:
            async with platform.database.transaction() as session:
                tasks.send_after_commit(session, "registry.expire_agreements_task")
        finally:
            request_id_var.reset(token)
        await wait_until_expired(platform, lapsed.id)
        assert await status_of(platform, current.id) == "active"
        async with platform.database.transaction() as session:
            tasks.send_after_commit(session, "registry.expire_agreements_task")
            await session.rollback()  # a rolled-back transaction sends nothing
    finally:
        worker.stop()
        tasks.configure(Settings())
    async with platform.database.transaction() as session:
        events = list(
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "agreement.expire"))
        )
    assert [(e.resource_id, e.request_id) for e in events] == [(str(lapsed.id), "req-from-the-web")]


async def test_beat_schedules_the_expiry_on_the_in_process_worker(
    embedded: tasks.EmbeddedWorker, platform: Platform, factory: Factory
) -> None:
    lapsed, _ = await lapsed_and_current(factory)
    await wait_until_expired(platform, lapsed.id)


def test_every_scheduled_task_is_registered() -> None:
    registered = set(tasks.celery_app.tasks)
    for entry in tasks.celery_app.conf.beat_schedule.values():
        assert entry["task"] in registered


def test_worker_settings_survive_a_killed_worker() -> None:
    conf = tasks.celery_app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] >= 3600


async def test_a_worker_process_on_redis_runs_the_same_task(
    platform: Platform, factory: Factory, signing_key: Path, tmp_path: Path
) -> None:
    lapsed, current = await lapsed_and_current(factory)
    async with redis_worker(platform, signing_key, tmp_path) as client:
        codes = await run_task(client, "registry.expire_agreements_task")
    assert lapsed.code in codes and current.code not in codes
    assert await status_of(platform, lapsed.id) == "expired"
