"""Prometheus metrics of a service, at `GET /metrics`.

Two kinds. Request counts and latencies are counted in the process, labelled by
the route's template (`/api/referrals/{referral_id}`, never the raw path, so a
scan of ids cannot blow up the series) and status. Everything else is read at
scrape time, so it is the truth of the moment and never a counter that drifts:
referrals by status and imaging shares by status from the database, the Celery
queue's depth from the broker, and task failures, which every worker process
adds to one hash in the broker's Redis (with the in-memory broker of the
embedded app the worker is in this process and counts here).

Scrape each service's own port; the proxy does not expose `/metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from typing import Any

import redis
import redis.asyncio as aioredis
from celery import signals
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.identity.deps import PlatformDep
from shared.platform import Platform

log = logging.getLogger("jisr.metrics")

REGISTRY = CollectorRegistry()
"""The in-process metrics; our own registry, so tests that build many apps share the series."""

REQUESTS = Counter(
    "jisr_http_requests",
    "HTTP requests answered, by service, method, route template and status.",
    ["service", "method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "jisr_http_request_duration_seconds",
    "Time to answer an HTTP request, by service, method and route template.",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
UNMATCHED = "<unmatched>"
QUEUE = "jisr"
"""The Celery queue (`task_default_queue` in shared/tasks.py)."""
FAILURES_KEY = "jisr:metrics:task-failures"
"""Hash in the broker's Redis: task name -> failures, added to by every worker process."""
PRIORITY_SEPARATOR = "\x06\x16"
"""kombu's Redis transport keeps priority levels of a queue in keys `<queue>\\x06\\x16<n>`."""

_local_failures: Tally[str] = Tally()


def service_name(title: str) -> str:
    """The service label from an app's title: "Jisr imaging service" -> "imaging"."""
    words = [w for w in title.lower().split() if w not in {"jisr", "service"}]
    return "-".join(words) or "platform"


class MetricsMiddleware:
    """Counts every HTTP request by the template of the route that answered it."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = str(scope.get("method", ""))
            REQUESTS.labels(self.service, method, route, str(status)).inc()
            LATENCY.labels(self.service, method, route).observe(time.perf_counter() - started)


# -- read at scrape time -------------------------------------------------------------------


def _is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


async def _counts(platform: Platform, table: str) -> dict[str, int]:
    query = text(f"SELECT status, COUNT(*) FROM {table} GROUP BY status")  # noqa: S608 - fixed names
    async with platform.database.engine.connect() as conn:
        return {str(status): int(n) for status, n in (await conn.execute(query)).all()}


async def _redis_queue(url: str) -> tuple[int, int, dict[str, int]]:
    """(waiting, reserved by workers, failures by task) from the broker's Redis."""
    client = aioredis.from_url(url, socket_connect_timeout=2.0)
    try:
        waiting = 0
        async for key in client.scan_iter(match=f"{QUEUE}*", count=100):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if name == QUEUE or name.startswith(QUEUE + PRIORITY_SEPARATOR):
                waiting += int(await client.llen(name))
        reserved = int(await client.hlen("unacked"))
        raw = await client.hgetall(FAILURES_KEY)
        failures = {
            (k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()
        }
    finally:
        await client.aclose()
    return waiting, reserved, failures


def _memory_queue(url: str) -> int:
    from kombu import Connection

    with Connection(url) as conn:
        channel: Any = conn.default_channel
        _, waiting, _ = channel.queue_declare(QUEUE, passive=True)
        return int(waiting)


async def snapshot(platform: Platform) -> list[Metric]:
    """The metric families read now from the database and the broker."""
    families: list[Metric] = []
    scrape_ok = GaugeMetricFamily(
        "jisr_metrics_source_up", "Whether a source of these metrics answered.", labels=["source"]
    )
    try:
        referrals, shares = await asyncio.gather(
            _counts(platform, "referrals"), _counts(platform, "imaging_shares")
        )
    except Exception as exc:  # a scrape reports what it can; say which source failed
        log.warning("metrics: database unavailable: %s", type(exc).__name__)
        scrape_ok.add_metric(["database"], 0)
    else:
        scrape_ok.add_metric(["database"], 1)
        by_status = GaugeMetricFamily(
            "jisr_referrals", "Referrals by workflow status.", labels=["status"]
        )
        for status, n in sorted(referrals.items()):
            by_status.add_metric([status], n)
        share_states = GaugeMetricFamily(
            "jisr_imaging_shares", "Imaging shares by status.", labels=["status"]
        )
        for status, n in sorted(shares.items()):
            share_states.add_metric([status], n)
        families += [by_status, share_states]

    url = platform.settings.broker_url
    waiting = GaugeMetricFamily(
        "jisr_celery_queue_length", "Tasks waiting in the queue.", labels=["queue"]
    )
    failed = CounterMetricFamily(
        "jisr_celery_task_failures", "Celery tasks that failed, by task name.", labels=["task"]
    )
    try:
        if _is_redis(url):
            depth, reserved, failures = await _redis_queue(url)
            unacked = GaugeMetricFamily(
                "jisr_celery_tasks_reserved",
                "Tasks a worker has taken but not yet acknowledged (late acks, ETA).",
            )
            unacked.add_metric([], reserved)
            families.append(unacked)
        else:
            depth, failures = await asyncio.to_thread(_memory_queue, url), dict(_local_failures)
    except Exception as exc:
        log.warning("metrics: broker unavailable: %s", type(exc).__name__)
        scrape_ok.add_metric(["broker"], 0)
    else:
        scrape_ok.add_metric(["broker"], 1)
        waiting.add_metric([QUEUE], depth)
        for task, n in sorted(failures.items()):
            failed.add_metric([task], n)
        families += [waiting, failed]
    families.append(scrape_ok)
    return families


class _Frozen(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


async def render(platform: Platform) -> bytes:
    """The exposition text: this process's counters, then what was read now."""
    now = CollectorRegistry(auto_describe=False)
    now.register(_Frozen(await snapshot(platform)))
    return generate_latest(REGISTRY) + generate_latest(now)


router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(platform: PlatformDep) -> Response:
    """Prometheus text exposition of this service."""
    return Response(await render(platform), media_type=CONTENT_TYPE_LATEST)


# -- task failures, counted where the worker runs ------------------------------------------


@signals.task_failure.connect
def _count_failure(sender: Any = None, **_: Any) -> None:
    name = str(getattr(sender, "name", None) or "unknown")
    from shared.tasks import celery_app  # here: shared.tasks imports this module

    url = str(celery_app.conf.broker_url or "")
    if not _is_redis(url):
        _local_failures[name] += 1
        return
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2.0)
        try:
            client.hincrby(FAILURES_KEY, name, 1)
        finally:
            client.close()
    except redis.RedisError:
        log.warning("metrics: could not count the failure of %s", name)
