"""A Celery worker killed (SIGKILL) in the middle of forwarding a share to the partner's Orthanc.

The worker is a real `celery worker` process on a redis-server of the test's
own. A relay in front of the partner's Orthanc stores the third of five
instances there but holds its answer: the worker is killed at exactly that
moment, so the partner holds an instance the platform has not recorded. Late
acknowledgement then brings the task back: at once when a pool process dies
(reject on worker lost), or, when the whole worker dies, to the next worker
once the broker's visibility timeout has passed. The task completes, and the
partner got every instance exactly once: Orthanc answers "AlreadyStored" to a
file sent twice, and the relay saw none.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from celery import Celery

from services.imaging.forwarding.models import Forwarding
from shared.identity.models import Role
from shared.platform import Platform
from shared.registry.models import Institution
from shared.settings import Settings
from tests.conftest import make_settings
from tests.factories import Factory
from tests.failure.gate import running_gate
from tests.failure.parts import RedisServer, wait_until
from tests.failure.workers import QUEUE, Worker, unacked_ages
from tests.imaging.conftest import OrthancServer, running_orthanc
from tests.imaging.test_shares import make_sharing

INSTANCES = 5  # the study make_sharing shares
HOLD_AT = 3
VISIBILITY_S = 3  # the broker's visibility timeout for the whole-worker case
DEADLINE = 90.0


@pytest.fixture(scope="module")
def partner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    with running_orthanc(tmp_path_factory.mktemp("partner")) as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, pg_url: str, partner: OrthancServer) -> Settings:
    """PostgreSQL, as in production; the platform's Orthanc credentials are the partner's."""
    return make_settings(
        tmp_path,
        signing_key,
        pg_url,
        orthanc_username=partner.username,
        orthanc_password=partner.password,
    )


def worker_env(settings: Settings, broker: RedisServer) -> dict[str, str]:
    return {
        "JISR_ENVIRONMENT": "test",
        "JISR_DATABASE_URL": settings.resolved_database_url,
        "JISR_BROKER_URL": broker.url,
        "JISR_SIGNING_KEY_PATH": str(settings.signing_key_path),
        "JISR_DATA_DIR": str(settings.data_dir),
        "JISR_ORTHANC_USERNAME": settings.orthanc_username or "",
        "JISR_ORTHANC_PASSWORD": settings.orthanc_password or "",
        "JISR_TASK_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
        "JISR_LOG_JSON": "false",
    }


async def partner_instances(partner: OrthancServer) -> list[str]:
    async with httpx.AsyncClient(auth=(partner.username, partner.password), timeout=10) as http:
        ids: list[str] = (await http.get(f"{partner.url}/instances")).json()
        return ids


async def forwarding_state(platform: Platform, forwarding_id: int) -> Forwarding:
    async with platform.database.transaction() as session:
        row = await session.get(Forwarding, forwarding_id)
        assert row is not None
        return row


async def wait_done(platform: Platform, forwarding_id: int, worker: Worker) -> Forwarding:
    end = time.monotonic() + DEADLINE
    while (row := await forwarding_state(platform, forwarding_id)).state != "done":
        assert time.monotonic() < end, f"{row.state} {row.last_error}\n{worker.output()[-3000:]}"
        await asyncio.sleep(0.1)
    return row


@pytest.mark.parametrize("killed", ["pool process", "whole worker"])
async def test_a_forwarding_survives_its_worker_killed_midway_and_sends_nothing_twice(
    killed: str,
    factory: Factory,
    client: httpx.AsyncClient,
    platform: Platform,
    settings: Settings,
    partner: OrthancServer,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    for orthanc_id in await partner_instances(partner):  # the module's partner starts empty
        async with httpx.AsyncClient(auth=(partner.username, partner.password)) as http:
            await http.delete(f"{partner.url}/instances/{orthanc_id}")
    sharing = await make_sharing(factory, client, platform)
    shared = await sharing.share()
    assert shared.status_code == 201, shared.text
    share_id = shared.json()["id"]
    coordinator = factory.headers(await factory.user(sharing.origin, Role.COORDINATOR))

    with running_gate(partner.url, hold_at=HOLD_AT) as gate:
        async with platform.database.transaction() as session:
            provider = await session.get(Institution, sharing.provider.id)
            assert provider is not None
            provider.imaging_store = gate.url
        started = await client.post(f"/api/imaging/shares/{share_id}/forward", headers=coordinator)
        assert started.status_code == 202, started.text
        forwarding_id = started.json()["id"]

        env = worker_env(settings, redis_server)
        first = Worker(env, tmp_path / "worker-1.log")
        workers = [first]
        broker = Celery("client", broker=redis_server.url)
        try:
            first.start()
            broker.send_task("imaging.forward_share_task", args=[forwarding_id], queue=QUEUE)
            assert await asyncio.to_thread(gate.held.wait, DEADLINE), first.output()[-3000:]
            assert len(await partner_instances(partner)) == HOLD_AT  # some, not all

            if killed == "pool process":
                await asyncio.to_thread(first.kill_pool_process)
                gate.release.set()
                finisher = first  # its main process forks a new pool process
            else:
                first.kill()
                gate.release.set()
                await asyncio.to_thread(
                    wait_until,
                    lambda: all(age > VISIBILITY_S for age in unacked_ages(redis_server.url)),
                    "the task's visibility timeout",
                )
                finisher = Worker(env, tmp_path / "worker-2.log")
                workers.append(finisher)
                finisher.start()

            row = await wait_done(platform, forwarding_id, finisher)
        finally:
            broker.close()
            for worker in workers:
                await asyncio.to_thread(worker.stop)

    assert (row.sent, row.total, row.last_error) == (INSTANCES, INSTANCES, None)
    assert len(await partner_instances(partner)) == INSTANCES
    assert Counter(status for _, status in gate.stored) == {"Success": INSTANCES}
    assert len({orthanc_id for orthanc_id, _ in gate.stored}) == INSTANCES
    progress = await client.get(f"/api/imaging/shares/{share_id}/forwarding", headers=coordinator)
    body = progress.json()
    assert (body["state"], body["sent"], body["total"]) == ("done", INSTANCES, INSTANCES)
    stranger = factory.headers(await factory.user(sharing.third, Role.COORDINATOR))
    hidden = await client.get(f"/api/imaging/shares/{share_id}/forwarding", headers=stranger)
    assert hidden.status_code == 404, hidden.text
    assert unacked_ages(redis_server.url) == []  # acknowledged once done
