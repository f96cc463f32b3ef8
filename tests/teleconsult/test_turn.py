"""The credentials `turn.py` hands out, against a real coturn started by the test.

coturn runs on a free loopback port with `use-auth-secret` (its REST-API
scheme) and our secret. Fresh credentials allocate a relay that carries
datagrams; expired ones, or ones signed with another secret, are refused.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioice.stun import TransactionFailed, TransactionTimeout
from aioice.turn import TurnTransport, create_turn_endpoint

from services.teleconsult import turn
from tests.conftest import missing_part

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
SECRET = "coturn-test-secret"
REALM = "jisr.test"
START_DEADLINE = 20.0


@dataclass(frozen=True)
class Coturn:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    if not Path(TURNSERVER).exists():
        missing_part("coturn is not installed (turnserver missing): apt install coturn")
    folder = tmp_path_factory.mktemp("coturn")
    port = free_udp_port()
    log = folder / "turnserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [
                TURNSERVER,
                "-n",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                f"--listening-port={port}",
                "--min-port=49160",
                "--max-port=49260",
                "--use-auth-secret",
                f"--static-auth-secret={SECRET}",
                f"--realm={REALM}",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--allow-loopback-peers",
                "--no-multicast-peers",
                f"--pidfile={folder / 'turnserver.pid'}",
                f"--log-file={folder / 'coturn.log'}",
                "--simple-log",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = Coturn(port, process, log)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Inbox(asyncio.DatagramProtocol):
    """A UDP peer that hands each datagram it receives to a queue."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))


async def allocate(server: Coturn, username: str, password: str) -> TurnTransport:
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol, server.address, username, password, lifetime=60
    )
    return transport


async def allocate_when_up(server: Coturn, username: str, password: str) -> TurnTransport:
    """The first allocation, retried until coturn answers (it starts in well under a second)."""
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"coturn exited: {server.log.read_text(errors='replace')[-2000:]}")
        try:
            return await asyncio.wait_for(allocate(server, username, password), timeout=2)
        except (TimeoutError, TransactionTimeout, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise


def credentials(peer: str, lifetime_s: int, secret: str = SECRET) -> turn.TurnCredentials:
    return turn.turn_credentials(secret, peer, expires_at=int(time.time()) + lifetime_s)


async def test_fresh_credentials_allocate_a_relay_that_carries_datagrams(coturn: Coturn) -> None:
    creds = credentials("user:42", 600)
    relay = await allocate_when_up(coturn, creds.username, creds.credential)
    loop = asyncio.get_running_loop()
    peer_transport, inbox = await loop.create_datagram_endpoint(Inbox, local_addr=("127.0.0.1", 0))
    try:
        peer_addr = peer_transport.get_extra_info("sockname")
        relay.sendto(b"hello through the relay", peer_addr)
        data, source = await asyncio.wait_for(inbox.received.get(), timeout=5)
        assert data == b"hello through the relay"
        assert source[0] == "127.0.0.1"
        assert source[1] != coturn.port  # it came from the relayed port, not the listener
    finally:
        relay.close()
        peer_transport.close()


@pytest.mark.parametrize(
    ("lifetime_s", "secret"),
    [(-30, SECRET), (600, "another-secret")],
    ids=["expired", "wrong-secret"],
)
async def test_expired_or_forged_credentials_are_refused(
    coturn: Coturn, lifetime_s: int, secret: str
) -> None:
    good = credentials("user:1", 600)
    (await allocate_when_up(coturn, good.username, good.credential)).close()
    bad = credentials("user:1", lifetime_s, secret)
    with pytest.raises(TransactionFailed) as refused:
        await asyncio.wait_for(allocate(coturn, bad.username, bad.credential), timeout=10)
    assert refused.value.response.attributes["ERROR-CODE"][0] == 401
