"""Failure tests: real parts stopped, killed and restarted while the platform works.

Each test starts what it breaks on its own free ports (a PostgreSQL cluster
under /tmp, a redis-server, Celery workers, the app as a process), never the
machine's shared PostgreSQL or Redis. A part that is not installed skips the
test with its reason, or fails it under JISR_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest

from tests.failure.parts import PgCluster, RedisServer, pg_cluster_folder


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/failure/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.failure)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this module's own, free to restart."""
    folder = pg_cluster_folder()
    server = PgCluster(folder)
    try:
        server.init()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cluster_database(cluster: PgCluster) -> str:
    """A new, migrated database in the module's cluster; its SQLAlchemy URL."""
    from shared import migrations

    name = f"jisr_{uuid.uuid4().hex[:10]}"
    cluster.tool("psql", "-d", "postgres", "-c", f'CREATE DATABASE "{name}"')
    url = cluster.url(name)
    migrations.upgrade(url)
    return url


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module's own: no other test's worker consumes its queues."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
