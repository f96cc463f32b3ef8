"""Two real aiortc peers meet through the real signalling and see each other.

The app is served by uvicorn on loopback; peers have no ICE servers (never a
public default) and gather 127.0.0.1 only. aiortc sends its candidates inside
the SDP; the test also relays a trickled candidate as a browser would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.teleconsult.signalling.bus import MemoryBus
from services.teleconsult.signalling.router import Signalling, install, router
from services.teleconsult.tokens import RoomRole
from shared.platform import Platform
from shared.settings import Settings
from shared.web import make_app
from tests.conftest import make_settings
from tests.teleconsult.peers import (
    AiortcPeer,
    SignallingClient,
    join_token,
    loopback_candidates,
    serve,
    standalone_hooks,
)

SID = 5


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, sqlite_url: str) -> Settings:
    return make_settings(tmp_path, signing_key, sqlite_url)


@pytest.fixture(autouse=True)
def loopback() -> Iterator[None]:
    with loopback_candidates():
        yield


@pytest.fixture
async def base(platform: Platform) -> AsyncIterator[str]:
    app = make_app("signalling under test", [router], platform=platform)
    install(app, Signalling(platform, MemoryBus(), standalone_hooks()))
    async with serve(app) as url:
        yield url


def shade_of(frame: object) -> int:
    rgb = frame.to_ndarray(format="rgb24")  # type: ignore[attr-defined]
    return int(rgb[rgb.shape[0] // 2, rgb.shape[1] // 2].mean())


async def test_two_aiortc_peers_connect_and_receive_each_others_frames_and_messages(
    base: str, platform: Platform
) -> None:
    host_token = join_token(platform, SID, "user:1", role=RoomRole.HOST, name="Dr Benali")
    guest_token = join_token(platform, SID, "user:2", name="Pr Laurent", institution="AP-HP")
    async with (
        SignallingClient.open(base, SID, host_token) as host_socket,
        SignallingClient.open(base, SID, guest_token) as guest_socket,
    ):
        host, guest = AiortcPeer(host_socket, shade=40), AiortcPeer(guest_socket, shade=220)
        try:
            assert (await host.start())["peers"] == []
            assert (await guest.start())["waiting"] is True
            joined = await host.expect("peer-joined")
            assert (joined["name"], joined["institution"]) == ("Pr Laurent", "AP-HP")
            await host_socket.send({"type": "admit", "peer_id": "user:2"})
            # Admitted, the guest offers to the host (the newcomer offers); the host answers.
            await guest.expect("admitted", peer_id="user:2")
            await host.wait_connected("user:2")
            await guest.wait_connected("user:1")

            assert "a=candidate:" in guest.pcs["user:1"].localDescription.sdp  # candidates inside
            assert "127.0.0.1" in guest.pcs["user:1"].localDescription.sdp
            seen_by_host = await host.first_frame("user:2")
            seen_by_guest = await guest.first_frame("user:1")
            assert (seen_by_host.width, seen_by_host.height) == (320, 240)
            assert abs(shade_of(seen_by_host) - 220) < 30 and abs(shade_of(seen_by_guest) - 40) < 30

            (await guest.channel_open("user:1")).send("السلام عليكم, bonjour")
            assert await host.channel_message() == ("user:2", "السلام عليكم, bonjour")
            (await host.channel_open("user:2")).send("bien reçu")
            assert await guest.channel_message() == ("user:1", "bien reçu")
        finally:
            await host.close()
            await guest.close()


async def test_trickled_candidates_as_browsers_send_them_connect_the_same_pair(
    base: str, platform: Platform
) -> None:
    host_token = join_token(platform, SID, "user:1", role=RoomRole.HOST)
    guest_token = join_token(platform, SID, "user:2")
    async with (
        SignallingClient.open(base, SID, host_token) as host_socket,
        SignallingClient.open(base, SID, guest_token) as guest_socket,
    ):
        host = AiortcPeer(host_socket, shade=40, trickle=True)
        guest = AiortcPeer(guest_socket, shade=220, trickle=True)
        try:
            await host.start()
            await guest.start()
            await host.expect("peer-joined")
            await host_socket.send({"type": "admit", "peer_id": "user:2"})
            await host.wait_connected("user:2")
            await guest.wait_connected("user:1")
            # Each side got a bare SDP, then the candidates one by one and the end of candidates.
            await host.end_of_candidates("user:2")
            await guest.end_of_candidates("user:1")
            for peer in (host, guest):
                assert peer.trickled and peer.trickled[-1]["candidate"] is None
                assert all("127.0.0.1" in m["candidate"]["candidate"] for m in peer.trickled[:-1])
                assert [d["type"] for d in peer.descriptions] == [
                    "answer" if peer is guest else "offer"
                ]
                assert "a=candidate:" not in peer.descriptions[0]["sdp"]
            await host.first_frame("user:2")
            await guest.first_frame("user:1")
        finally:
            await host.close()
            await guest.close()


async def test_a_peer_that_reconnects_offers_again_and_media_flows_again(
    base: str, platform: Platform
) -> None:
    """A network drop the server has not noticed yet: the new socket replaces the old one,
    the others hear `peer-reconnected`, and the newcomer's offer renews the connection
    (aiortc cannot restart ICE, so the host replaces its RTCPeerConnection)."""
    host_token = join_token(platform, SID, "user:1", role=RoomRole.HOST)
    peers: list[AiortcPeer] = []
    try:
        async with (
            SignallingClient.open(base, SID, host_token) as host_socket,
            SignallingClient.open(base, SID, join_token(platform, SID, "user:2")) as old,
        ):
            host, guest = AiortcPeer(host_socket, shade=40), AiortcPeer(old, shade=220)
            peers += [host, guest]
            await host.start()
            await guest.start()
            await host.expect("peer-joined")
            await host_socket.send({"type": "admit", "peer_id": "user:2"})
            await host.first_frame("user:2")
            first_connection = host.pcs["user:2"]
            async with SignallingClient.open(base, SID, join_token(platform, SID, "user:2")) as new:
                again = AiortcPeer(new, shade=150)
                peers.append(again)
                welcome = await again.start()
                assert welcome["reconnected"] is True and welcome["waiting"] is False
                assert await old.wait_closed() == 4000
                assert (await host.expect("peer-reconnected"))["peer_id"] == "user:2"
                await host.wait_connected("user:2")
                assert host.pcs["user:2"] is not first_connection
                frame = await host.first_frame("user:2")
                assert abs(shade_of(frame) - 150) < 30  # from the new connection
                await again.first_frame("user:1")
    finally:
        for peer in peers:
            await peer.close()
