"""Signalling through the real socket: uvicorn on loopback, `websockets` clients, the in-memory bus.

Join tokens are minted with the platform's keyring, as the join route does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from services.teleconsult.signalling.bus import MemoryBus
from services.teleconsult.signalling.hooks import Hooks
from services.teleconsult.signalling.router import Signalling, announce, install, router
from services.teleconsult.tokens import JoinGrant, RoomRole
from shared.platform import Platform
from shared.settings import Settings
from shared.web import make_app
from tests.conftest import make_settings
from tests.teleconsult.peers import SignallingClient, join_token, serve, standalone_hooks

SID = 41
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
TRICKLED = {
    "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "abcd",
}


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, sqlite_url: str) -> Settings:
    """SQLite only: these tests are about sockets; the refusal audits run on both in test_signalling_refusals."""
    return make_settings(
        tmp_path,
        signing_key,
        sqlite_url,
        teleconsult_max_participants=3,
        stun_urls=["stun:127.0.0.1:3478"],
    )


@dataclass
class Recorded:
    ended: list[tuple[str, str, str]] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)
    """Peers for whom the hooks fail as a database that went away would."""

    def hooks(self) -> Hooks:
        def fail_for(grant: JoinGrant) -> None:
            if grant.peer in self.broken:
                raise ConnectionResetError("the database went away")

        async def ice_servers(platform: Platform, grant: JoinGrant) -> list[dict[str, Any]]:
            fail_for(grant)
            return [{"urls": list(platform.settings.stun_urls)}]

        async def end_session(
            platform: Platform, grant: JoinGrant, outcome: str, note: str
        ) -> None:
            fail_for(grant)
            self.ended.append((grant.peer, outcome, note))

        async def peer_left(platform: Platform, grant: JoinGrant) -> None:
            self.left.append(grant.peer)

        return standalone_hooks(
            ice_servers=ice_servers, end_session=end_session, peer_left=peer_left
        )


@dataclass
class Room:
    base: str
    platform: Platform
    signalling: Signalling
    recorded: Recorded

    def token(
        self, peer: str, role: RoomRole = RoomRole.PARTICIPANT, *, session_id: int = SID
    ) -> str:
        return join_token(self.platform, session_id, peer, role=role)

    def open(
        self, peer: str, role: RoomRole = RoomRole.PARTICIPANT, *, session_id: int = SID
    ) -> Any:
        return SignallingClient.open(
            self.base, session_id, self.token(peer, role, session_id=session_id)
        )


def signalling_app(platform: Platform, hooks: Hooks) -> tuple[FastAPI, Signalling]:
    app = make_app("signalling under test", [router], platform=platform)
    return app, install(app, Signalling(platform, MemoryBus(), hooks))


@pytest.fixture
async def live(platform: Platform) -> AsyncIterator[Room]:
    recorded = Recorded()
    app, signalling = signalling_app(platform, recorded.hooks())
    async with serve(app) as base:
        yield Room(base, platform, signalling, recorded)


async def admitted_pair(live: Room, host: SignallingClient, guest: SignallingClient) -> None:
    await host.expect("welcome")
    await guest.expect("welcome")
    await host.expect("peer-joined", peer_id="user:2")
    await host.send({"type": "admit", "peer_id": "user:2"})
    await guest.expect("admitted", peer_id="user:2")
    await host.expect("admitted", peer_id="user:2")


async def test_a_participant_waits_until_the_host_admits_it_then_they_relay_offer_answer_candidates_and_chat(
    live: Room,
) -> None:
    async with live.open("user:1", RoomRole.HOST) as host:
        welcome = await host.expect("welcome")
        assert welcome["peer_id"] == "user:1" and welcome["role"] == "host"
        assert welcome["waiting"] is False and welcome["peers"] == []
        assert welcome["ice_servers"] == [{"urls": ["stun:127.0.0.1:3478"]}]
        async with live.open("user:2") as guest:
            waiting = await guest.expect("welcome")
            assert waiting["waiting"] is True and waiting["peers"] == []
            joined = await host.expect("peer-joined")
            assert joined["peer_id"] == "user:2" and joined["waiting"] is True
            assert joined["institution"] == "CHU Oran" and joined["role"] == "participant"

            await guest.send({"type": "offer", "to": "user:1", "sdp": SDP})
            refused = await guest.expect("error")
            assert refused["code"] == "not_allowed"

            await host.send({"type": "admit", "peer_id": "user:2"})
            admitted = await guest.expect("admitted")
            assert [p["peer_id"] for p in admitted["peers"]] == ["user:1"]
            assert (await host.expect("admitted"))["peer_id"] == "user:2"

            await guest.send({"type": "offer", "to": "user:1", "sdp": SDP})
            offer = await host.expect("offer")
            assert offer == {"type": "offer", "from": "user:2", "to": "user:1", "sdp": SDP}
            await host.send({"type": "answer", "to": "user:2", "sdp": SDP})
            assert (await guest.expect("answer"))["from"] == "user:1"
            await guest.send({"type": "candidate", "to": "user:1", "candidate": TRICKLED})
            assert (await host.expect("candidate"))["candidate"] == TRICKLED
            await guest.send({"type": "candidate", "to": "user:1", "candidate": None})
            assert (await host.expect("candidate"))["candidate"] is None
            await host.send({"type": "chat", "text": "مرحبا, bonjour"})
            chat = await guest.expect("chat")
            assert chat["from"] == "user:1" and chat["text"] == "مرحبا, bonjour"

            await guest.send({"type": "leave"})
            assert await guest.wait_closed() == 1000
            assert (await host.expect("peer-left"))["peer_id"] == "user:2"
    assert live.recorded.left == ["user:2", "user:1"]


async def test_a_waiting_peer_hears_nothing_but_its_admission(live: Room) -> None:
    async with live.open("user:1", RoomRole.HOST) as host, live.open("user:2") as guest:
        await admitted_pair(live, host, guest)
        async with live.open("user:3") as waiting:
            await waiting.expect("welcome")
            await host.expect("peer-joined", peer_id="user:3")
            await host.send({"type": "chat", "text": "before admission"})
            await guest.expect("chat")
            await waiting.send({"type": "chat", "text": "let me in"})
            assert (await waiting.next())["code"] == "not_allowed"
            await host.send({"type": "admit", "peer_id": "user:3"})
            first = await waiting.next()
            assert first["type"] == "admitted" and first["peer_id"] == "user:3"
            # The admitted participant learns of the newcomer only now.
            assert (await guest.next())["type"] == "admitted"


async def test_only_the_host_admits_and_ends(live: Room) -> None:
    async with live.open("user:1", RoomRole.HOST) as host, live.open("user:2") as guest:
        await admitted_pair(live, host, guest)
        async with live.open("user:3") as other:
            await other.expect("welcome")
            await guest.send({"type": "admit", "peer_id": "user:3"})
            assert (await guest.expect("error"))["code"] == "not_allowed"
            await guest.send({"type": "end"})
            assert (await guest.expect("error"))["code"] == "not_allowed"
            await host.send({"type": "admit", "peer_id": "user:2"})
            assert (await host.expect("error"))["code"] == "not_waiting"
    assert live.recorded.ended == []


async def test_the_host_ends_the_session_for_everyone_waiting_or_not(live: Room) -> None:
    async with live.open("user:1", RoomRole.HOST) as host, live.open("user:2") as guest:
        await admitted_pair(live, host, guest)
        async with live.open("user:3") as waiting:
            await waiting.expect("welcome")
            await host.expect("peer-joined", peer_id="user:3")
            await host.send({"type": "end", "outcome": "completed", "note": "plan agreed"})
            for client in (host, guest, waiting):
                ended = await client.expect("ended")
                assert ended["by"] == "user:1" and ended["outcome"] == "completed"
                assert await client.wait_closed() == 1000
        async with live.open("user:2") as late:
            assert (await late.next())["type"] == "ended"
            assert await late.wait_closed() == 1000
    assert live.recorded.ended == [("user:1", "completed", "plan agreed")]


async def test_a_peer_reconnecting_over_a_live_socket_replaces_it_and_stays_admitted(
    live: Room,
) -> None:
    async with live.open("user:1", RoomRole.HOST) as host, live.open("user:2") as old:
        await admitted_pair(live, host, old)
        async with live.open("user:2") as new:
            welcome = await new.expect("welcome")
            assert welcome["waiting"] is False and welcome["reconnected"] is True
            assert [p["peer_id"] for p in welcome["peers"]] == ["user:1"]
            assert await old.wait_closed() == 4000
            back = await host.expect("peer-reconnected")
            assert back["peer_id"] == "user:2" and back["waiting"] is False
            await new.send({"type": "offer", "to": "user:1", "sdp": SDP})
            assert (await host.expect("offer"))["from"] == "user:2"
            # The replaced socket leaving does not take the peer out of the room.
            await host.send({"type": "chat", "text": "still there?"})
            assert (await new.expect("chat"))["text"] == "still there?"
            assert host.nothing_pending()


async def test_an_admitted_peer_that_dropped_comes_back_admitted(live: Room) -> None:
    async with live.open("user:1", RoomRole.HOST) as host:
        async with live.open("user:2") as guest:
            await admitted_pair(live, host, guest)
        assert (await host.expect("peer-left"))["peer_id"] == "user:2"
        async with live.open("user:2") as again:
            welcome = await again.expect("welcome")
            assert welcome["waiting"] is False and welcome["reconnected"] is False
            joined = await host.expect("peer-joined")
            assert joined["peer_id"] == "user:2" and joined["waiting"] is False


async def test_a_full_room_refuses_more_people_but_not_the_recorder(live: Room) -> None:
    async with (
        live.open("user:1", RoomRole.HOST) as host,
        live.open("user:2") as a,
        live.open("user:3") as b,
    ):
        for client in (host, a, b):
            await client.expect("welcome")
        async with live.open("user:4") as extra:
            refused = await extra.next()
            assert refused["type"] == "error" and refused["code"] == "room_full"
            assert await extra.wait_closed() == 1008
        async with live.open("recorder", RoomRole.RECORDER) as recorder:
            welcome = await recorder.expect("welcome")
            assert (
                welcome["waiting"] is False and len(welcome["peers"]) == 1
            )  # the host; the others wait
        # The host itself coming back on a new socket is not one too many.
        async with live.open("user:1", RoomRole.HOST) as host_again:
            assert (await host_again.expect("welcome"))["reconnected"] is True


async def test_bad_messages_get_an_error_and_the_socket_stays_open(live: Room) -> None:
    async with live.open("user:1", RoomRole.HOST) as host, live.open("user:2") as guest:
        await admitted_pair(live, host, guest)
        too_big = {
            "type": "chat",
            "text": "x" * (live.platform.settings.signalling_max_message_bytes + 1),
        }
        cases: list[tuple[Any, str]] = [
            (too_big, "too_large"),
            ("not json at all", "not_json"),
            ([1, 2], "not_json"),
            ({"type": "teleport"}, "unknown_type"),
            ({"type": "offer", "to": "user:1"}, "invalid_message"),
        ]
        for message, code in cases:
            await guest.send_raw(message if isinstance(message, str) else json.dumps(message))
            error = await guest.expect("error")
            assert error["code"] == code, error
            await guest.send({"type": "chat", "text": "still here"})  # a good one in between
            assert (await host.expect("chat"))["text"] == "still here"
        await guest.send({"type": "offer", "to": "user:99", "sdp": SDP})
        assert (await guest.expect("error"))["code"] == "unknown_peer"
        await guest.send({"type": "candidate", "to": "user:2", "candidate": TRICKLED})
        assert (await guest.expect("error"))["code"] == "unknown_peer"  # not to itself
        assert guest.close_code is None


async def test_repeated_garbage_closes_that_socket_only(live: Room) -> None:
    async with live.open("user:1", RoomRole.HOST) as host, live.open("user:2") as guest:
        await admitted_pair(live, host, guest)
        async with live.open("user:7", RoomRole.HOST, session_id=SID + 1) as elsewhere:
            await elsewhere.expect("welcome")
            for _ in range(5):
                await guest.send_raw("{garbage")
            assert await guest.wait_closed() == 1008
            assert (await host.expect("peer-left"))["peer_id"] == "user:2"
            await elsewhere.send({"type": "chat", "text": "unbothered"})  # nobody else to hear it
            await host.send({"type": "chat", "text": "alone now"})
            assert host.close_code is None and elsewhere.close_code is None


async def test_repeated_oversized_messages_close_with_1009(live: Room) -> None:
    big = "x" * (live.platform.settings.signalling_max_message_bytes + 10)
    async with live.open("user:1", RoomRole.HOST) as host:
        await host.expect("welcome")
        for _ in range(5):
            await host.send({"type": "chat", "text": big})
        assert await host.wait_closed() == 1009


async def test_a_flood_closes_the_flooding_socket_and_not_its_room(
    tmp_path: Path, signing_key: Path, sqlite_url: str
) -> None:
    settings = make_settings(tmp_path, signing_key, sqlite_url, signalling_max_messages_per_s=5)
    platform = Platform.from_settings(settings)
    app, _ = signalling_app(platform, standalone_hooks())
    try:
        async with serve(app) as base:
            room = Room(
                base, platform, Signalling(platform, MemoryBus(), standalone_hooks()), Recorded()
            )
            async with room.open("user:1", RoomRole.HOST) as host, room.open("user:2") as guest:
                await admitted_pair(room, host, guest)
                for i in range(20):
                    await guest.send({"type": "chat", "text": f"spam {i}"})
                assert (await guest.expect("error"))["code"] == "rate_limited"
                assert await guest.wait_closed() == 1008
                await host.expect("peer-left", peer_id="user:2")
                async with room.open("user:3") as newcomer:
                    assert (await newcomer.expect("welcome"))["waiting"] is True
                    assert (await host.expect("peer-joined"))["peer_id"] == "user:3"
    finally:
        await platform.database.dispose()


async def test_announce_ends_the_room_from_outside_a_socket(live: Room) -> None:
    async with live.open("user:1", RoomRole.HOST) as host, live.open("user:2") as guest:
        await admitted_pair(live, host, guest)
        await announce(live.platform, SID, {"type": "ended", "by": "user:1", "outcome": "no_show"})
        for client in (host, guest):
            assert (await client.expect("ended"))["outcome"] == "no_show"
            assert await client.wait_closed() == 1000
    await announce(
        live.signalling.bus, SID + 5, {"type": "ended", "by": "", "outcome": "completed"}
    )


async def test_a_failing_part_closes_that_socket_with_1011_and_nothing_else(live: Room) -> None:
    live.recorded.broken.add("user:9")
    async with live.open("user:1", RoomRole.HOST) as host:
        await host.expect("welcome")
        async with live.open("user:9") as unlucky:
            assert await unlucky.wait_closed() == 1011
            assert unlucky.nothing_pending()
        async with live.open("user:2") as guest:
            assert (await guest.expect("welcome"))["waiting"] is True
            await host.expect("peer-joined", peer_id="user:2")


async def test_an_end_that_cannot_be_recorded_is_an_error_and_the_room_stays(live: Room) -> None:
    async with live.open("user:1", RoomRole.HOST) as host, live.open("user:2") as guest:
        await admitted_pair(live, host, guest)
        live.recorded.broken.add("user:1")
        await host.send({"type": "end"})
        error = await host.expect("error")
        assert error["code"] == "end_failed" and "try again" in error["detail"]
        live.recorded.broken.clear()
        await host.send({"type": "end"})
        assert (await guest.expect("ended"))["by"] == "user:1"
    assert live.recorded.ended == [("user:1", "completed", "")]


async def test_errors_a_person_may_read_are_in_their_language(live: Room) -> None:
    token = join_token(live.platform, SID, "user:5", lang="ar")
    async with live.open("user:1", RoomRole.HOST) as host:
        await host.expect("welcome")
        async with SignallingClient.open(live.base, SID, token) as waiting:
            await waiting.expect("welcome")
            await waiting.send({"type": "chat", "text": "hello"})
            error = await waiting.expect("error")
            assert error["code"] == "not_allowed"
            assert error["detail"] == "أنت في غرفة الانتظار: سيسمح لك المضيف بالدخول."
            await waiting.send({"type": "teleport"})  # a developer's mistake stays in English
            assert (await waiting.expect("error"))["detail"] == "unknown message type 'teleport'"
