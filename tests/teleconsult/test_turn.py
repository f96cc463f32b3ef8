"""The credentials `turn.py` hands out, against a real coturn started by the test.

coturn runs on a free loopback port with `use-auth-secret` (its REST-API
scheme) and a secret of its own (`tests/teleconsult/coturn.py`). Fresh credentials allocate a relay that carries
datagrams; expired ones, or ones signed with another secret, are refused.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aioice.stun import TransactionFailed
from aioice.turn import TurnTransport, create_turn_endpoint

from services.teleconsult import turn
from tests.teleconsult.coturn import Coturn, coturn_fixture

__all__ = ["coturn_fixture"]  # the fixture, imported so that pytest finds it here

ALLOCATE_TIMEOUT_S = 10.0


class Inbox(asyncio.DatagramProtocol):
    """A UDP peer that hands each datagram it receives to a queue."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))


async def allocate(server: Coturn, username: str, password: str) -> TurnTransport:
    """A TURN allocation (RFC 8656); coturn already answers STUN when the fixture yields."""
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(
            asyncio.DatagramProtocol, server.address, username, password, lifetime=60
        ),
        timeout=ALLOCATE_TIMEOUT_S,
    )
    return transport


def credentials(peer: str, lifetime_s: int, secret: str) -> turn.TurnCredentials:
    return turn.turn_credentials(secret, peer, expires_at=int(time.time()) + lifetime_s)


async def test_fresh_credentials_allocate_a_relay_that_carries_datagrams(coturn: Coturn) -> None:
    creds = credentials("user:42", 600, coturn.secret)
    relay = await allocate(coturn, creds.username, creds.credential)
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
    [(-30, None), (600, "another-secret")],
    ids=["expired", "wrong-secret"],
)
async def test_expired_or_forged_credentials_are_refused(
    coturn: Coturn, lifetime_s: int, secret: str | None
) -> None:
    good = credentials("user:1", 600, coturn.secret)
    (await allocate(coturn, good.username, good.credential)).close()
    bad = credentials("user:1", lifetime_s, secret or coturn.secret)
    with pytest.raises(TransactionFailed) as refused:
        await allocate(coturn, bad.username, bad.credential)
    assert refused.value.response.attributes["ERROR-CODE"][0] == 401
