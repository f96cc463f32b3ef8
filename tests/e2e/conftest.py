"""The real platform (`jisr run` on a fresh data directory, demo seeded) and headless Chromium.

The platform runs as a subprocess on a free loopback port for the whole
session; the browser is Debian's `chromium`, driven by playwright's sync API
(never a downloaded browser). Where Chromium is missing the tests are skipped
with a one-line reason, or fail when `JISR_REQUIRE_SERVICES=1`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import missing_part

CHROMIUM = Path(os.environ.get("JISR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEMO_PASSWORD = "jisr-demo"
START_DEADLINE_S = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Platform:
    base_url: str
    log: Path


@pytest.fixture(scope="session")
def platform_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """`python -m jisr.cli run`: migrates, seeds the demo, serves; stopped at the end."""
    root = tmp_path_factory.mktemp("platform")
    port = _free_port()
    env = {
        **os.environ,
        "JISR_DATA_DIR": str(root / "var"),
        "JISR_PORT": str(port),
        "JISR_ADMIN_PASSWORD": "e2e-admin-secret",
        "JISR_LOG_JSON": "false",
        # The recorder its worker spawns gathers a loopback candidate (aioice skips 127.0.0.1)
        # and reaches the signalling socket at this port (its default: host and port).
        "JISR_RECORDER_HOST_ADDRESS": "127.0.0.1",
    }
    for name in ("JISR_DATABASE_URL", "JISR_BROKER_URL", "JISR_OIDC_ISSUER"):
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
            yield Platform(base, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


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


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, for the tests of one module."""
    if not CHROMIUM.exists():
        missing_part(f"Chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_part("the playwright package is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
