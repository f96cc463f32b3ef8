"""The real platform, twice, and headless Chromium.

Each test runs against `jisr run` on a fresh data directory (demo seeded, a
subprocess on a free loopback port) and against the production topology of
`jisr run-services` behind nginx (tests/topology.py: PostgreSQL, Redis, two
Orthancs, coturn, each service apart, a Celery worker and beat); each is
started once for all the e2e tests. The browser is Debian's `chromium`, driven
by playwright's sync API (never a downloaded browser). Where Chromium is missing
the tests are skipped with a one-line reason, or fail when
`JISR_REQUIRE_SERVICES=1`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from jisr.topology.processes import free_port, stop
from tests.conftest import missing_part
from tests.topology import started_topology

CHROMIUM = Path(os.environ.get("JISR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MEDIA_ARGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]
DEMO_PASSWORD = "jisr-demo"
START_DEADLINE_S = 90


@dataclass(frozen=True)
class Platform:
    """Where the platform under test answers (`base_url`), its log (`jisr run`'s file, or the
    topology's folder of logs), the data directory its processes share and the TURN server
    its peers are given (the topology's coturn; None: `jisr run` configures none)."""

    base_url: str
    log: Path
    data_dir: Path
    turn_url: str | None = None
    kind: str = "embedded"


PLATFORMS = ["embedded", "topology"]
"""Every e2e test runs against both: `jisr run` in one process, and the production topology
(`jisr run-services`: each service apart, Celery on Redis, PostgreSQL, Orthanc) behind nginx."""
TEST_AIDS = {
    "JISR_ADMIN_PASSWORD": "e2e-admin-secret",
    # The recorder the worker spawns gathers a loopback candidate (aioice skips 127.0.0.1).
    "JISR_RECORDER_HOST_ADDRESS": "127.0.0.1",
}
E2E_REDIS_DB = int(os.environ.get("JISR_TEST_E2E_REDIS_DB", "6"))
"""The topology's broker; signalling uses the next one (see tests/topology.py)."""


@pytest.fixture(scope="package", params=PLATFORMS)
def platform_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """The platform, started once per kind for all e2e tests and stopped after the last.

    Package scope rather than session: the topology's dozen processes stop when the e2e
    tests are done instead of idling beside the rest of the suite. Where nginx, Orthanc or
    coturn is missing the topology's runs skip (or fail under JISR_REQUIRE_SERVICES=1) and
    the embedded ones still run.
    """
    if request.param == "topology":
        root = tmp_path_factory.mktemp("topology")
        with started_topology(
            root, name="e2e", redis_db=E2E_REDIS_DB, environment=TEST_AIDS
        ) as started:
            yield Platform(
                started.proxy_url, started.log_dir, started.data_dir, started.turn_url, "topology"
            )
    else:
        with embedded(tmp_path_factory.mktemp("platform")) as platform:
            yield platform


@contextmanager
def embedded(root: Path) -> Iterator[Platform]:
    """`python -m jisr.cli run`: migrates, seeds the demo, serves; stopped on exit."""
    port = free_port()
    env = {
        **os.environ,
        **TEST_AIDS,
        "JISR_DATA_DIR": str(root / "var"),
        "JISR_PORT": str(port),
        # JSON lines with the request id, as the topology's processes write them.
        "JISR_LOG_JSON": "true",
    }
    # Its recorder reaches the signalling socket at this port (the default: host and port).
    for name in (
        "JISR_DATABASE_URL",
        "JISR_BROKER_URL",
        "JISR_OIDC_ISSUER",
        "JISR_RECORDER_SIGNALLING_URL",
    ):
        env.pop(name, None)
    log = root / "platform.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jisr.cli", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parents[2],
        )
        try:
            _wait_until_up(process, base, log)
            yield Platform(base, log, root / "var")
        finally:
            stop(process, 30)


def _wait_until_up(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    with httpx.Client(base_url=base, timeout=2) as client:
        while True:
            if process.poll() is not None:
                pytest.fail(f"jisr run exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jisr run did not answer within {START_DEADLINE_S} s")
            time.sleep(0.2)


@contextmanager
def launched(*extra: str) -> Iterator[Any]:
    """Debian's Chromium, headless, with `extra` arguments; skipped (or failed) when missing."""
    if not CHROMIUM.exists():
        missing_part(f"Chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_part("the playwright package is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra])
        try:
            yield browser
        finally:
            browser.close()


# The browsers depend on `platform_server` so that they stop before it changes from one
# platform to the other: playwright's sync API holds an event loop in this thread while
# it runs, and starting the topology needs none running.


@pytest.fixture(scope="module")
def chromium(platform_server: Platform) -> Iterator[Any]:
    """Chromium for the tests of one module on one platform."""
    with launched() as browser:
        yield browser


@pytest.fixture(scope="module")
def media_chromium(platform_server: Platform) -> Iterator[Any]:
    """Chromium with fake camera and microphone, allowed to use loopback candidates."""
    with launched(*MEDIA_ARGS) as browser:
        yield browser
