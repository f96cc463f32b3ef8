"""Liveness and readiness of a service, for supervisors, load balancers and compose.

`/healthz` (and the older `/health`) answers as long as the process runs: a
supervisor restarts a process that stops answering it. `/readyz` (and the older
`/health/ready`) asks each dependency the service needs and answers 503 naming
the one that failed, so a proxy or orchestrator sends no traffic to a replica
that cannot serve. Which dependencies a service needs is `SERVICE_CHECKS`;
`jisr serve` applies it with `use_checks()`. An app that was not told (the
embedded one, tests) checks every dependency the settings name.

The database check also compares the schema with the code's Alembic head: a
new image started before `jisr migrate` ran stays out of rotation.

Institutions' own Orthanc stores are reported, not required: a partner's store
that is down must not take imaging out of rotation (forwarding retries it), so
readiness says "degraded" and lists them instead of answering 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import lru_cache

import httpx
import redis.asyncio as aioredis
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from shared.identity.deps import PlatformDep
from shared.platform import Platform

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 3.0
Check = Callable[[Platform], Awaitable[str]]
"""Answers a short "ok"-like detail, or raises: the exception's type and text say why not."""


class NotReady(Exception):
    """A dependency answered, but not as this service needs."""


@lru_cache
def _code_heads() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    from shared import migrations

    return frozenset(ScriptDirectory.from_config(migrations.config("sqlite://")).get_heads())


async def check_database(platform: Platform) -> str:
    """The database answers and its schema is at the code's migration head."""
    async with platform.database.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars()
        at = frozenset(rows)
    heads = _code_heads()
    if at != heads:
        raise NotReady(f"schema at {sorted(at)}, code expects {sorted(heads)}: run jisr migrate")
    return "ok"


async def _ping_redis(url: str) -> str:
    client = aioredis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_S)
    try:
        await client.ping()
    finally:
        await client.aclose()
    return "ok"


async def check_broker(platform: Platform) -> str:
    """The Celery broker answers (Redis); the embedded in-memory broker always does."""
    url = platform.settings.broker_url
    if not url.startswith(("redis://", "rediss://")):
        return "embedded"
    return await _ping_redis(url)


async def check_signalling(platform: Platform) -> str:
    """The Redis that fans signalling out to every replica answers."""
    url = platform.settings.signalling_url
    if not url.startswith(("redis://", "rediss://")):
        return "embedded"
    return await _ping_redis(url)


async def probe_orthanc(url: str, username: str | None, password: str | None) -> str:
    """`GET /system` answers with our credentials and the DICOMweb plugin is loaded."""
    auth = (username, password or "") if username else None
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S, auth=auth) as client:
        system = await client.get(url.rstrip("/") + "/system")
        system.raise_for_status()
        plugins = await client.get(url.rstrip("/") + "/plugins")
        plugins.raise_for_status()
    if "dicom-web" not in plugins.json():
        raise NotReady("Orthanc without its DICOMweb plugin")
    return f"Orthanc {system.json().get('Version', '?')}"


async def check_shared_store(platform: Platform) -> str:
    """The store of de-identified copies: the shared Orthanc, or files under the data directory."""
    settings = platform.settings
    if not settings.shared_store_url:
        return "files"
    return await probe_orthanc(
        settings.shared_store_url, settings.shared_store_username, settings.shared_store_password
    )


async def institution_stores(platform: Platform) -> dict[str, str]:
    """Each institution's own Orthanc: "Orthanc <version>" or what went wrong (reported only)."""
    async with platform.database.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT code, imaging_store FROM institutions "
                    "WHERE imaging_store IS NOT NULL ORDER BY code"
                )
            )
        ).all()
    settings = platform.settings

    async def one(url: str) -> str:
        try:
            return await asyncio.wait_for(
                probe_orthanc(url, settings.orthanc_username, settings.orthanc_password),
                CHECK_TIMEOUT_S * 2,
            )
        except Exception as exc:  # reported, never raised: see the module docstring
            return f"unavailable: {_why(exc)}"

    answers = await asyncio.gather(*(one(str(url)) for _, url in rows))
    return {str(code): answer for (code, _), answer in zip(rows, answers, strict=True)}


CHECKS: dict[str, Check] = {
    "database": check_database,
    "broker": check_broker,
    "signalling": check_signalling,
    "shared_store": check_shared_store,
}
SERVICE_CHECKS: dict[str, tuple[str, ...]] = {
    "referral": ("database", "broker"),
    "imaging": ("database", "broker", "shared_store"),
    "teleconsult": ("database", "broker", "signalling"),
    "all": tuple(CHECKS),
}
REPORTS_STORES = frozenset({"imaging", "all"})


def use_checks(app: FastAPI, service: str) -> None:
    """Make `app`'s readiness check what `service` needs (see `SERVICE_CHECKS`)."""
    app.state.health_service = service


def _why(exc: BaseException) -> str:
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


async def readiness(platform: Platform, service: str) -> tuple[bool, dict[str, object]]:
    """Run the service's checks at once; (ready, body). Never raises."""
    names = SERVICE_CHECKS.get(service, SERVICE_CHECKS["all"])

    async def run(name: str) -> tuple[str, bool, str]:
        try:
            return name, True, await asyncio.wait_for(CHECKS[name](platform), CHECK_TIMEOUT_S * 2)
        except Exception as exc:  # any failure means not ready; say which and why
            return name, False, _why(exc)

    results = await asyncio.gather(*(run(name) for name in names))
    ready = all(ok for _, ok, _ in results)
    body: dict[str, object] = {"service": service}
    body.update({name: detail for name, _, detail in results})
    status = "ok" if ready else "unavailable"
    if ready and service in REPORTS_STORES:
        stores = await institution_stores(platform)
        body["stores"] = stores
        if any(answer.startswith("unavailable") for answer in stores.values()):
            status = "degraded"
    body["status"] = status
    return ready, body


@router.get("/healthz")
@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process is up and serving requests."""
    return {"status": "ok"}


@router.get("/readyz")
@router.get("/health/ready")
async def ready(request: Request, platform: PlatformDep) -> JSONResponse:
    """Readiness: every dependency this service needs answers (503 names the one that did not)."""
    service = getattr(request.app.state, "health_service", "all")
    ok, body = await readiness(platform, service)
    return JSONResponse(body, status_code=200 if ok else 503)
