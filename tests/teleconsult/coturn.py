"""A real coturn for the TURN tests, started on free loopback ports with a secret of its own.

coturn runs with `use-auth-secret` (its REST-API scheme, FIELD-NOTES), relays only
on 127.0.0.1 inside a window of ports that were free when it started, allows
loopback peers (the tests' peers are on loopback; production keeps that off),
and writes its log, pid and user database in the test's folder. The fixture
returns once coturn answers a STUN Binding request, and stops it afterwards.

Test modules import `coturn_fixture` (registered under the name `coturn`).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioice import stun

from jisr.topology.processes import stop
from tests.conftest import missing_part

TURNSERVER = Path(os.environ.get("JISR_TURNSERVER", "/usr/bin/turnserver"))
REALM = "jisr.test"
RELAY_PORTS = 40
START_DEADLINE_S = 15.0
PROBE_TIMEOUT_S = 0.2


@dataclass(frozen=True)
class Coturn:
    port: int
    secret: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_relay_range() -> tuple[int, int]:
    """A window of relay ports none of which is bound now (coturn picks inside it)."""
    for _ in range(50):
        low = 20000 + secrets.randbelow(30000)
        try:
            for port in range(low, low + RELAY_PORTS):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return low, low + RELAY_PORTS - 1
    pytest.fail("no free window of relay ports on 127.0.0.1")


def answers_stun(port: int) -> bool:
    """One STUN Binding request (RFC 5389); True when coturn answers it."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(PROBE_TIMEOUT_S)
        sock.sendto(bytes(request), ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    return stun.parse_message(data).transaction_id == request.transaction_id


@contextmanager
def running_coturn(folder: Path) -> Iterator[Coturn]:
    """coturn on a free loopback port with a random secret, answering STUN; stopped after."""
    if not TURNSERVER.exists():
        missing_part(f"coturn is not installed at {TURNSERVER}: apt install coturn")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_udp_port()
    low, high = free_relay_range()
    secret = secrets.token_hex(16)
    log = folder / "turn.log"
    process = subprocess.Popen(  # noqa: S603 - Debian's turnserver, arguments of our own
        [
            str(TURNSERVER),
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            f"--min-port={low}",
            f"--max-port={high}",
            "--use-auth-secret",
            f"--static-auth-secret={secret}",
            f"--realm={REALM}",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--allow-loopback-peers",
            "--no-multicast-peers",
            "--simple-log",
            f"--log-file={log}",
            f"--pidfile={folder / 'turn.pid'}",
            f"--userdb={folder / 'turn.db'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    server = Coturn(port, secret, log, process)
    try:
        # Each probe waits up to 0.2 s for an answer: a condition with a deadline, not a sleep.
        for _ in range(int(START_DEADLINE_S / PROBE_TIMEOUT_S)):
            if process.poll() is not None:
                pytest.fail(f"turnserver exited ({process.returncode}): {server.log_tail()}")
            if answers_stun(port):
                break
        else:
            pytest.fail(f"turnserver did not answer STUN within {START_DEADLINE_S} s")
        yield server
    finally:
        stop(process, 10)


@pytest.fixture(scope="module", name="coturn")
def coturn_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """One coturn for the tests of a module (each test makes its own credentials)."""
    with running_coturn(tmp_path_factory.mktemp("coturn")) as server:
        yield server
