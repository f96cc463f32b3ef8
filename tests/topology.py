"""The production topology (`jisr run-services`) as a pytest fixture, for tests that go through the proxy.

Use it from a test module with `from tests.topology import topology  # noqa: F401`
(module scope: one start, about ten seconds, for the module's tests). It runs on
its own PostgreSQL databases (dropped afterwards) and on Redis databases
`TOPOLOGY_REDIS_DB` and the next one, emptied before and after: two modules that
run topologies at the same time need different ones (`JISR_TEST_TOPOLOGY_REDIS_DB`).

When nginx, Orthanc (with its DICOMweb plugin) or coturn is missing, the fixture goes
through `missing_part()`: a skip with the reason, or a failure under
JISR_REQUIRE_SERVICES=1 (.ci/run).

Teardown checks that every process stopped on SIGTERM, none killed. Fixtures of
other scopes (the e2e's `platform_server`) start one with `started_topology()`.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from jisr.topology import Topology, missing_parts, running
from tests.conftest import PG_DSN, missing_part, need

TOPOLOGY_REDIS_DB = int(os.environ.get("JISR_TEST_TOPOLOGY_REDIS_DB", "10"))


def _missing_reason() -> str | None:
    missing = missing_parts()
    if not missing:
        return None
    return (
        f"the services topology needs {', '.join(missing)}: "
        "apt install nginx orthanc orthanc-dicomweb orthanc-postgresql coturn"
    )


def require_topology() -> None:
    reason = _missing_reason()
    if reason:
        missing_part(reason)
    dsn = urlsplit(PG_DSN)
    need("PostgreSQL", dsn.hostname or "127.0.0.1", dsn.port or 5432)
    need("Redis", "127.0.0.1", 6379)


@contextmanager
def started_topology(
    root: Path, *, name: str, redis_db: int, environment: Mapping[str, str] | None = None
) -> Iterator[Topology]:
    """`running()` on databases of its own (`jisr_<name>_<random>`, dropped afterwards) and on
    Redis databases `redis_db` and the next; after it stops, every process must have stopped
    on SIGTERM, none killed. Skips (or fails) first when a part is missing."""
    require_topology()
    with running(
        root,
        database=f"jisr_{name}_{uuid.uuid4().hex[:8]}",
        postgres=PG_DSN,
        redis_db=redis_db,
        drop_databases=True,
        environment=environment,
    ) as started:
        yield started
    killed = {part: code for part, code in started.exit_codes.items() if code == -signal.SIGKILL}
    assert not killed, f"these did not stop on SIGTERM and were killed: {killed}"


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Everything of docker-compose.yml running here, behind nginx; stopped after the module."""
    with started_topology(
        tmp_path_factory.mktemp("topology"), name="topo", redis_db=TOPOLOGY_REDIS_DB
    ) as started:
        yield started
