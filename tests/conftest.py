"""Fixtures: a migrated database per test (SQLite, and the real PostgreSQL), the app, factories.

Each test gets its own database cloned from a template migrated once per run
by Alembic: a file copy for SQLite, `CREATE DATABASE ... TEMPLATE` on
PostgreSQL. API tests run on both. When PostgreSQL or Redis is unreachable
the tests that need it are skipped with a one-line reason, unless
`JISR_REQUIRE_SERVICES=1` (set by .ci/run), where they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from kombu.transport import memory

from jisr.app import create_app
from shared import migrations
from shared.platform import Platform
from shared.settings import Settings
from tests.factories import Factory

PG_DSN = os.environ.get("JISR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("JISR_TEST_REDIS", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("JISR_REQUIRE_SERVICES") == "1"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def missing_part(reason: str) -> NoReturn:
    """A real part this test needs is not here: skip with the reason, or fail in CI.

    The one place tests skip: `.ci/run` sets JISR_REQUIRE_SERVICES=1, so there a
    missing PostgreSQL, Redis, Orthanc or Chromium is a failure, never a skip.
    """
    if REQUIRE_SERVICES:
        pytest.fail(reason + " (JISR_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def need(service: str, host: str, port: int) -> None:
    """Skip (or, in CI, fail) when a real service this test needs is not reachable."""
    if not reachable(host, port):
        missing_part(f"{service} is not reachable on {host}:{port}")


def _pg_url(database: str) -> str:
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{database}"


async def _pg_admin(*statements: str) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
def _empty_in_memory_broker() -> None:
    """Every test starts with kombu's in-memory queues empty.

    They live on the transport's class for the whole test process, and every
    test's fresh database reuses the same ids: a task an earlier test sent with
    no worker running would otherwise reach the next test's embedded worker and
    act on its rows.
    """
    for queue in memory.Channel.queues.values():
        with queue.mutex:
            queue.queue.clear()


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from shared.identity.tokens import Keyring

    path = tmp_path_factory.mktemp("keys") / "signing-key.pem"
    Keyring.load_or_create(path)
    return path


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrations.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    dsn = urlsplit(PG_DSN)
    need("PostgreSQL", dsn.hostname or "127.0.0.1", dsn.port or 5432)
    name = f"jisr_tmpl_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    migrations.upgrade(_pg_url(name))
    yield name
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "jisr.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    name = f"jisr_t_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    yield _pg_url(name)
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both databases: API behaviour must not depend on which one runs."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(fixture)
    return url


def make_settings(data_dir: Path, signing_key: Path, database_url: str, **extra: Any) -> Settings:
    """Settings of a test: its own data directory and database, the run's shared signing key."""
    return Settings(
        environment="test",
        data_dir=data_dir,
        database_url=database_url,
        signing_key_path=signing_key,
        seed_demo=False,
        log_json=False,
        **extra,
    )


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, sqlite_url: str) -> Settings:
    return make_settings(tmp_path, signing_key, sqlite_url)


@pytest.fixture
async def platform(settings: Settings) -> AsyncIterator[Platform]:
    platform = Platform.from_settings(settings)
    yield platform
    await platform.database.dispose()


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return create_app(platform)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://jisr.test") as client:
        yield client


@pytest.fixture
async def factory(platform: Platform) -> Factory:
    return Factory(platform)
