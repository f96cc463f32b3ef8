"""TURN only: two aiortc peers relay their media through a real coturn started by the test.

coturn (`tests/teleconsult/coturn.py`) runs on a free loopback port with
`use-auth-secret` (the REST-API scheme) and a random secret; the peers get their
ICE servers from `turn.ice_servers` exactly as the join API hands them out, set
`iceTransportPolicy="relay"`, and signal through the real signalling socket.
The selected candidate pair must be relay on both ends. A peer whose
credential was made with another secret cannot allocate, and ICE fails.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint
from aiortc import RTCPeerConnection

from services.teleconsult import turn
from shared.settings import Settings
from tests.conftest import make_settings
from tests.teleconsult.conftest import Clinic
from tests.teleconsult.coturn import Coturn, coturn_fixture
from tests.teleconsult.test_recorder import (
    TIMEOUT_S,
    MediaPeer,
    Room,
    Served,
    join_url,
    loopback_candidates_fixture,
    make_room,
    peers_fixture,
    served_fixture,
)

# The recorder tests' fixtures and the shared coturn, for this module too.
__all__ = ["coturn_fixture", "loopback_candidates_fixture", "peers_fixture", "served_fixture"]

NO_CONNECTION_S = 5.0


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, sqlite_url: str, coturn: Coturn) -> Settings:
    """TURN only (no STUN), with the test coturn's URL and secret."""
    return make_settings(
        tmp_path, signing_key, sqlite_url, turn_urls=[coturn.url], turn_secret=coturn.secret
    )


def forged(ice_servers: list[dict[str, Any]], secret: str) -> list[dict[str, Any]]:
    """The same TURN username with a password made from another secret."""
    out = []
    for server in ice_servers:
        if "username" in server:
            expiry, _, peer = server["username"].partition(":")
            creds = turn.turn_credentials(secret, peer, expires_at=int(expiry))
            server = {**server, "credential": creds.credential}
        out.append(server)
    return out


async def allocates(coturn: Coturn, server: dict[str, Any]) -> bool:
    """A TURN Allocate (RFC 8656) with this server's credentials: True when coturn grants it."""
    try:
        transport, _ = await asyncio.wait_for(
            create_turn_endpoint(
                asyncio.DatagramProtocol,
                ("127.0.0.1", coturn.port),
                server["username"],
                server["credential"],
            ),
            TIMEOUT_S,
        )
    except stun.TransactionFailed:
        return False
    transport.close()
    return True


def selected_pair_types(pc: RTCPeerConnection) -> set[tuple[str, str]]:
    """(local, remote) candidate types of the pairs ICE nominated (aioice keeps them per component)."""
    types = set()
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        nominated = ice._connection._nominated  # no public accessor in aiortc 1.16
        for pair in nominated.values():
            types.add((pair.local_candidate.type, pair.remote_candidate.type))
    return types


async def relay_peers(
    served: Served, room: Room, peers: list[MediaPeer], guest_ice: list[dict[str, Any]]
) -> tuple[MediaPeer, MediaPeer]:
    """Both peers relay-only, with the ICE servers the join API gave them (the guest's: `guest_ice`)."""
    host_ticket, guest_ticket = room.tickets
    host = MediaPeer(
        join_url(served, host_ticket), ice_servers=host_ticket["ice_servers"], relay_only=True
    )
    guest = MediaPeer(join_url(served, guest_ticket), ice_servers=guest_ice, relay_only=True)
    peers += [host, guest]
    await host.join()
    await guest.join()
    waiting = await host.wait_message(lambda m: m["type"] == "peer-joined" and m["waiting"])
    assert host.room is not None
    await host.room.send({"type": "admit", "peer_id": waiting["peer_id"]})
    return host, guest


async def test_two_peers_relay_through_coturn_with_rest_api_credentials(
    clinic: Clinic, served: Served, peers: list[MediaPeer], coturn: Coturn
) -> None:
    room = await make_room(clinic)
    guest_ice = room.tickets[1]["ice_servers"]
    assert [s["urls"] for s in guest_ice] == [[coturn.url]]
    assert guest_ice[0]["username"].endswith(":" + room.tickets[1]["peer"])
    host, guest = await relay_peers(served, room, peers, guest_ice)

    await asyncio.wait_for(host.got_frame.wait(), TIMEOUT_S)
    await asyncio.wait_for(guest.got_frame.wait(), TIMEOUT_S)

    for peer in (host, guest):
        assert peer.room is not None
        (pc,) = peer.room.connections.values()
        assert selected_pair_types(pc) == {("relay", "relay")}
        assert sum(peer.frames.values()) > 0


async def test_a_credential_made_with_another_secret_does_not_connect(
    clinic: Clinic, served: Served, peers: list[MediaPeer], coturn: Coturn
) -> None:
    room = await make_room(clinic)
    wrong = forged(room.tickets[1]["ice_servers"], "not-" + coturn.secret)
    host, guest = await relay_peers(served, room, peers, wrong)

    # coturn refuses the forged credential's allocation (401) and grants the real one.
    assert await allocates(coturn, room.tickets[1]["ice_servers"][0])
    assert not await allocates(coturn, wrong[0])
    # So the guest offers no relay candidate, and relay-only, there is no path.
    await guest.wait_message(lambda m: m["type"] == "answer")  # handled before it is noted
    assert guest.room is not None
    (guest_pc,) = guest.room.connections.values()
    assert "typ relay" not in guest_pc.localDescription.sdp
    # No media within the deadline a relayed pair needs on loopback (it connects in < 1 s).
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(host.got_frame.wait(), NO_CONNECTION_S)
    assert not guest.got_frame.is_set()
    for peer in (host, guest):
        assert all(not selected_pair_types(pc) for pc in peer.room.connections.values())
