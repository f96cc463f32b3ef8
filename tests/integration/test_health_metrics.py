"""Liveness, readiness and Prometheus metrics of each service, on SQLite and PostgreSQL.

Readiness asks real dependencies: the migrated database (and an unmigrated one),
the real Redis, a port where nothing listens, and a real Orthanc for imaging.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from celery import Celery
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from jisr.topology.processes import Process
from services.imaging.app import create_app as imaging_app
from services.referral.app import create_app as referral_app
from services.teleconsult.app import create_app as teleconsult_app
from shared import health, metrics, tasks
from shared.platform import Platform
from shared.registry.models import Institution
from shared.settings import Settings
from tests.celery_worker import worker_command
from tests.conftest import REDIS_URL, need
from tests.integration.failing_tasks import FAILING_TASK
from tests.referral.conftest import World, world  # noqa: F401 - the fixture, used by name

APPS = {"referral": referral_app, "imaging": imaging_app, "teleconsult": teleconsult_app}


def closed_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the exposition `text`, or None when it is absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def serve(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://jisr.test")


def variant(platform: Platform, **update: object) -> Platform:
    """The same database and keys under other settings."""
    return Platform(
        platform.settings.model_copy(update=update), platform.database, platform.keyring, None
    )


@pytest.mark.parametrize("service", sorted(APPS))
async def test_each_service_is_live_and_ready_on_its_migrated_database(
    platform: Platform, service: str
) -> None:
    app = APPS[service](platform)
    health.use_checks(app, service)
    async with await serve(app) as client:
        for path in ("/healthz", "/health"):
            assert (await client.get(path)).json() == {"status": "ok"}
        for path in ("/readyz", "/health/ready"):
            ready = await client.get(path)
            assert ready.status_code == 200, ready.text
            body = ready.json()
            assert body["status"] == "ok" and body["database"] == "ok"
            assert body["service"] == service
            assert set(body) - {"status", "service", "stores"} == set(
                health.SERVICE_CHECKS[service]
            )


async def test_an_unmigrated_database_is_not_ready_and_says_to_migrate(
    tmp_path: Path, signing_key: Path
) -> None:
    settings = Settings(
        environment="test",
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
        signing_key_path=signing_key,
    )
    platform = Platform.from_settings(settings)
    try:
        async with await serve(referral_app(platform)) as client:
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
    finally:
        await platform.database.dispose()
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert "database" in ready.json() and ready.json()["database"] != "ok"


async def test_a_broker_that_does_not_answer_takes_the_service_out_of_rotation(
    platform: Platform,
) -> None:
    need("Redis", "127.0.0.1", 6379)
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    up = variant(platform, broker_url=REDIS_URL)
    down = variant(platform, broker_url=dead)
    for p, code in ((up, 200), (down, 503)):
        app = referral_app(p)
        health.use_checks(app, "referral")
        async with await serve(app) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == code, ready.text
    assert ready.json()["broker"].startswith(("ConnectionError", "TimeoutError", "OSError"))


async def test_teleconsult_needs_its_signalling_redis_and_referral_does_not(
    platform: Platform,
) -> None:
    down = variant(platform, signalling_url=f"redis://127.0.0.1:{closed_port()}/0")
    tele, referral = teleconsult_app(down), referral_app(down)
    health.use_checks(tele, "teleconsult")
    health.use_checks(referral, "referral")
    async with await serve(tele) as client:
        refused = await client.get("/readyz")
    async with await serve(referral) as client:
        served = await client.get("/readyz")
    assert refused.status_code == 503 and refused.json()["signalling"] != "ok"
    assert served.status_code == 200 and "signalling" not in served.json()


@pytest.fixture
def orthanc_url(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    from tests.imaging.conftest import running_orthanc

    with running_orthanc(tmp_path / "orthanc") as server:
        yield server.url, server.username, server.password


async def test_imaging_asks_its_shared_orthanc_and_reports_institution_stores(
    platform: Platform, orthanc_url: tuple[str, str, str], factory: object
) -> None:
    url, user, password = orthanc_url
    served = variant(
        platform,
        shared_store_url=url,
        shared_store_username=user,
        shared_store_password=password,
        orthanc_username=user,
        orthanc_password=password,
    )
    wrong = variant(served, shared_store_password="not-the-password")
    async with platform.database.transaction() as session:
        for code, store in (("DZ-LOCAL", url), ("FR-PARTNER", f"http://127.0.0.1:{closed_port()}")):
            session.add(
                Institution(
                    code=code,
                    name_ar=code,
                    name_fr=code,
                    name_en=code,
                    country=code[:2],
                    city="-",
                    kind="hospital",
                    timezone="UTC",
                    imaging_store=store,
                )
            )
    results = {}
    for name, p in (("served", served), ("wrong", wrong)):
        app = imaging_app(p)
        health.use_checks(app, "imaging")
        async with await serve(app) as client:
            results[name] = await client.get("/readyz")
    ok = results["served"]
    assert ok.status_code == 200, ok.text
    assert ok.json()["shared_store"].startswith("Orthanc 1.")
    # A partner's store that is down degrades imaging but keeps it in rotation.
    assert ok.json()["status"] == "degraded"
    assert ok.json()["stores"]["DZ-LOCAL"].startswith("Orthanc 1.")
    assert ok.json()["stores"]["FR-PARTNER"].startswith("unavailable")
    refused = results["wrong"]
    assert refused.status_code == 503 and "401" in refused.json()["shared_store"]


async def test_requests_are_counted_by_route_template_and_status(
    world: World,  # noqa: F811 - the imported fixture
    platform: Platform,
) -> None:
    client = world.client
    before = (await client.get("/metrics")).text
    first = await world.submit()
    assert first.status_code == 201, first.text
    referral_id = first.json()["id"]
    seen = await client.get(f"/api/referrals/{referral_id}", headers=world.h(world.referrer))
    hidden = await client.get(f"/api/referrals/{referral_id}", headers=world.h(world.stranger))
    assert seen.status_code == 200 and hidden.status_code == 404
    await client.get("/no/such/page/123")
    after = await client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")

    def moved(text_before: str, text_after: str, **labels: str) -> float:
        name = "jisr_http_requests_total"
        return (sample(text_after, name, **labels) or 0) - (
            sample(text_before, name, **labels) or 0
        )

    route = "/api/referrals/{referral_id}"
    assert moved(before, after.text, service="platform", route=route, status="200") == 1
    assert moved(before, after.text, service="platform", route=route, status="404") == 1
    assert moved(before, after.text, route="/api/referrals", method="POST", status="201") == 1
    assert moved(before, after.text, route=metrics.UNMATCHED, status="404") == 1
    assert f"/api/referrals/{referral_id}" not in after.text  # never the raw path
    count = sample(
        after.text, "jisr_http_request_duration_seconds_count", route=route, method="GET"
    )
    assert count is not None and count >= 2


async def test_referrals_by_status_are_read_from_the_database_at_scrape_time(
    world: World,  # noqa: F811 - the imported fixture
) -> None:
    before = (await world.client.get("/metrics")).text
    assert sample(before, "jisr_referrals", status="offered") is None
    for _ in range(2):
        assert (await world.submit()).status_code == 201
    after = (await world.client.get("/metrics")).text
    assert sample(after, "jisr_referrals", status="offered") == 2
    assert sample(after, "jisr_metrics_source_up", source="database") == 1


def failures(text: str) -> float:
    return sample(text, "jisr_celery_task_failures_total", task=FAILING_TASK) or 0


async def wait_for_failures(client: httpx.AsyncClient, n: int, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while failures((await client.get("/metrics")).text) < n:
        assert time.monotonic() < deadline, f"{n} failures not counted within {within_s} s"
        await asyncio.sleep(0.1)


async def test_the_in_process_worker_counts_its_queue_and_failures_here(platform: Platform) -> None:
    """Embedded default: the in-memory queue and the failures of the in-process worker."""
    tasks.use_platform(platform)
    tasks.celery_app.control.purge()  # what earlier tests left in this process's memory queue
    async with await serve(referral_app(platform)) as client:
        before = failures((await client.get("/metrics")).text)
        for _ in range(2):
            tasks.celery_app.send_task(FAILING_TASK)
        waiting = (await client.get("/metrics")).text
        assert sample(waiting, "jisr_celery_queue_length", queue="jisr") == 2
        worker = tasks.EmbeddedWorker(beat=False)
        worker.start()
        try:
            await wait_for_failures(client, before + 2)
        finally:
            worker.stop()
        done = (await client.get("/metrics")).text
    assert sample(done, "jisr_celery_queue_length", queue="jisr") == 0


@pytest.fixture
def redis_db_12() -> Iterator[str]:
    """Redis database 12: its own queue, so no other test's worker takes these tasks."""
    need("Redis", "127.0.0.1", 6379)
    url = "redis://127.0.0.1:6379/12"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


async def test_a_worker_process_counts_failures_in_redis_for_any_scraper(
    platform: Platform, redis_db_12: str, tmp_path: Path
) -> None:
    """Tasks wait in Redis until a worker comes; its failures land in the broker for every service."""
    on_redis = variant(platform, broker_url=redis_db_12)
    sender = Celery("client", broker=redis_db_12)
    worker = Process(
        "worker",
        worker_command("metrics", include="tests.integration.failing_tasks"),
        {
            **os.environ,
            "JISR_BROKER_URL": redis_db_12,
            "JISR_DATABASE_URL": platform.settings.resolved_database_url,
            "JISR_DATA_DIR": str(tmp_path),
            "JISR_SIGNING_KEY_PATH": str(platform.settings.key_path),
        },
        tmp_path / "worker.log",
    )
    try:
        async with await serve(referral_app(on_redis)) as client:
            empty = (await client.get("/metrics")).text
            assert sample(empty, "jisr_celery_queue_length", queue="jisr") == 0
            assert failures(empty) == 0
            for _ in range(3):
                sender.send_task(FAILING_TASK, queue="jisr")
            waiting = (await client.get("/metrics")).text
            assert sample(waiting, "jisr_celery_queue_length", queue="jisr") == 3
            worker.start()
            await wait_for_failures(client, 3)
            done = (await client.get("/metrics")).text
            assert sample(done, "jisr_celery_queue_length", queue="jisr") == 0
            assert sample(done, "jisr_metrics_source_up", source="broker") == 1
    finally:
        sender.close()
        worker.stop()


async def test_a_broker_that_is_down_is_reported_not_raised(platform: Platform) -> None:
    down = variant(platform, broker_url=f"redis://127.0.0.1:{closed_port()}/0")
    async with await serve(referral_app(down)) as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert sample(answer.text, "jisr_metrics_source_up", source="broker") == 0
    assert sample(answer.text, "jisr_metrics_source_up", source="database") == 1
