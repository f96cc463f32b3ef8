"""Two replicas serve one room through the real Redis: separate apps, separate uvicorn servers.

Each test has its own key and channel namespace in Redis, removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from services.teleconsult.signalling import room
from services.teleconsult.signalling.bus import RedisBus
from services.teleconsult.signalling.router import Signalling, announce, install, router
from services.teleconsult.signalling.spent import RedisSpent
from services.teleconsult.tokens import RoomRole
from shared.audit import AuditEvent
from shared.identity.tokens import LEEWAY_S
from shared.platform import Platform
from shared.settings import Settings
from shared.web import make_app
from tests.conftest import REDIS_URL, make_settings, need
from tests.teleconsult.peers import WAIT_S, SignallingClient, join_token, serve, standalone_hooks

SID = 77
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
CANDIDATE = {
    "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
}

pytestmark = pytest.mark.redis


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, sqlite_url: str) -> Settings:
    need("Redis", "127.0.0.1", 6379)
    return make_settings(tmp_path, signing_key, sqlite_url, signalling_url=REDIS_URL)


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    ns = f"jisr-test:{uuid.uuid4().hex[:10]}:"
    yield ns
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=ns + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@dataclass
class Replica:
    base: str
    platform: Platform
    signalling: Signalling

    def open(self, peer: str, role: RoomRole = RoomRole.PARTICIPANT) -> Any:
        return SignallingClient.open(
            self.base, SID, join_token(self.platform, SID, peer, role=role)
        )


@asynccontextmanager
async def replica(
    settings: Settings, namespace: str, *, liveness_s: float = 15.0
) -> AsyncIterator[Replica]:
    platform = Platform.from_settings(settings)
    app = make_app("replica", [router], platform=platform)
    bus = RedisBus(REDIS_URL, namespace=namespace, liveness_s=liveness_s)
    signalling = install(app, Signalling(platform, bus, standalone_hooks()))
    await signalling.start()
    try:
        async with serve(app) as base:
            yield Replica(base, platform, signalling)
    finally:
        await signalling.close()
        await platform.database.dispose()


async def test_peers_on_two_replicas_wait_get_admitted_and_exchange_everything(
    settings: Settings, namespace: str
) -> None:
    async with replica(settings, namespace) as a, replica(settings, namespace) as b:
        assert a.signalling.bus.instance != b.signalling.bus.instance
        async with a.open("user:1", RoomRole.HOST) as host, b.open("user:2") as guest:
            await host.expect("welcome")
            assert (await guest.expect("welcome"))["waiting"] is True
            assert (await host.expect("peer-joined"))["peer_id"] == "user:2"
            await host.send({"type": "admit", "peer_id": "user:2"})
            admitted = await guest.expect("admitted")
            assert [p["peer_id"] for p in admitted["peers"]] == ["user:1"]
            await guest.send({"type": "offer", "to": "user:1", "sdp": SDP})
            assert await host.expect("offer") == {
                "type": "offer",
                "from": "user:2",
                "to": "user:1",
                "sdp": SDP,
            }
            await host.send({"type": "answer", "to": "user:2", "sdp": SDP})
            assert (await guest.expect("answer"))["from"] == "user:1"
            await host.send({"type": "candidate", "to": "user:2", "candidate": CANDIDATE})
            assert (await guest.expect("candidate"))["candidate"] == CANDIDATE
            await guest.send({"type": "chat", "text": "vu de Paris"})
            assert (await host.expect("chat"))["text"] == "vu de Paris"
            async with a.open("user:3") as third:
                await third.expect("welcome")
                await host.expect("peer-joined", peer_id="user:3")
                await third.send({"type": "chat", "text": "let me in"})
                assert (await third.expect("error"))["code"] == "not_allowed"
            assert (await host.expect("peer-left"))["peer_id"] == "user:3"
            await guest.send({"type": "leave"})
            assert (await host.expect("peer-left"))["peer_id"] == "user:2"


async def test_a_peer_moving_to_the_other_replica_replaces_its_socket_there(
    settings: Settings, namespace: str
) -> None:
    async with (
        replica(settings, namespace) as a,
        replica(settings, namespace) as b,
        a.open("user:1", RoomRole.HOST) as host,
        b.open("user:2") as old,
    ):
        await host.expect("welcome")
        await old.expect("welcome")
        await host.expect("peer-joined")
        await host.send({"type": "admit", "peer_id": "user:2"})
        await old.expect("admitted")
        async with a.open("user:2") as new:
            welcome = await new.expect("welcome")
            assert welcome["reconnected"] is True and welcome["waiting"] is False
            assert await old.wait_closed() == room.CLOSE_REPLACED
            assert (await host.expect("peer-reconnected"))["peer_id"] == "user:2"
            await new.send({"type": "offer", "to": "user:1", "sdp": SDP})
            assert (await host.expect("offer"))["from"] == "user:2"


async def _first_word(at: Replica, token: str) -> str:
    """Present `token` to `at`: `welcome`, or the close code of a refusal before any message."""
    async with SignallingClient.open(at.base, SID, token) as client:
        message = asyncio.ensure_future(client.next())
        closed = asyncio.ensure_future(client.wait_closed())
        done, pending = await asyncio.wait(
            {message, closed}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        assert done, "neither a message nor a close"
        return str(message.result()["type"]) if message in done else f"closed {closed.result()}"


async def test_a_join_token_opens_one_socket_across_replicas(
    settings: Settings, namespace: str
) -> None:
    async with replica(settings, namespace) as a, replica(settings, namespace) as b:
        spent = a.signalling.spent
        assert isinstance(spent, RedisSpent) and isinstance(b.signalling.spent, RedisSpent)
        token = join_token(a.platform, SID, "user:1", role=RoomRole.HOST)
        async with SignallingClient.open(a.base, SID, token) as host:
            await host.expect("welcome")
            for other in (b, a):  # replayed on the other replica, then on the same one
                async with SignallingClient.open(other.base, SID, token) as replay:
                    assert await replay.wait_closed() == 1008
                    assert "already used" in replay.close_reason and replay.nothing_pending()
            await host.send({"type": "chat", "text": "still the only user:1"})
            assert host.close_code is None and host.nothing_pending()
        # Presented to both replicas at once, a fresh token still opens one socket.
        twice = join_token(a.platform, SID, "user:2")
        words = await asyncio.gather(_first_word(a, twice), _first_word(b, twice))
        assert sorted(words) == ["closed 1008", "welcome"]
        # A spent record lasts as long as the token could verify, then Redis drops it.
        keys = [key async for key in spent.redis.scan_iter(match=namespace + "spent:*")]
        assert len(keys) == 2
        for key in keys:
            assert 0 < await spent.redis.ttl(key) <= settings.join_token_ttl_s + LEEWAY_S + 1
        async with a.platform.database.transaction() as session:
            events = await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "teleconsult.join", AuditEvent.outcome == "refused")
                .order_by(AuditEvent.id)
            )
            assert [(e.rule, e.details["peer"]) for e in events] == [
                ("invalid_token", "user:1"),
                ("invalid_token", "user:1"),
                ("invalid_token", "user:2"),
            ]


async def test_the_limit_and_the_end_hold_across_replicas(
    settings: Settings, namespace: str
) -> None:
    settings = settings.model_copy(update={"teleconsult_max_participants": 2})
    async with (
        replica(settings, namespace) as a,
        replica(settings, namespace) as b,
        a.open("user:1", RoomRole.HOST) as host,
        b.open("user:2") as guest,
    ):
        await host.expect("welcome")
        await guest.expect("welcome")
        async with b.open("user:3") as extra:
            assert (await extra.next())["code"] == "room_full"
            assert await extra.wait_closed() == 1008
        # The REST end route's broadcast, from a process holding no socket (not started).
        outsider = RedisBus(REDIS_URL, namespace=namespace)
        try:
            await announce(outsider, SID, {"type": "ended", "by": "user:1", "outcome": "completed"})
        finally:
            await outsider.close()
        for client in (host, guest):
            assert (await client.expect("ended"))["outcome"] == "completed"
            assert await client.wait_closed() == 1000
        async with a.open("user:2") as late:
            assert (await late.next())["type"] == "ended"


@asynccontextmanager
async def killable_replica(
    settings: Settings, namespace: str, liveness_s: float
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    env = {
        **os.environ,
        "JISR_ENVIRONMENT": "test",
        "JISR_DATABASE_URL": settings.resolved_database_url,
        "JISR_SIGNING_KEY_PATH": str(settings.key_path),
        "JISR_DATA_DIR": str(settings.data_dir),
        "JISR_SIGNALLING_URL": REDIS_URL,
        "JISR_LOG_JSON": "false",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.teleconsult.replica",
        namespace,
        str(liveness_s),
        env=env,
        cwd=Path(__file__).parents[2],
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        port = int(await asyncio.wait_for(process.stdout.readline(), 60))
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        await process.wait()


async def test_when_a_replica_dies_its_peers_leave_the_room_on_the_others(
    settings: Settings, namespace: str
) -> None:
    liveness = 1.5
    async with replica(settings, namespace, liveness_s=liveness) as a:
        async with (
            killable_replica(settings, namespace, liveness) as (doomed, process),
            a.open("user:1", RoomRole.HOST) as host,
        ):
            await host.expect("welcome")
            token = join_token(a.platform, SID, "user:2")
            async with SignallingClient.open(doomed, SID, token) as guest:
                await guest.expect("welcome")
                await host.expect("peer-joined", peer_id="user:2")
                await host.send({"type": "admit", "peer_id": "user:2"})
                await guest.expect("admitted")
                process.send_signal(signal.SIGKILL)  # no goodbye: its peers stay in Redis
                await guest.wait_closed()
                left = await host.expect("peer-left", within=WAIT_S + liveness)
                assert left["peer_id"] == "user:2"
        # Back on a live replica, the dead one's peer is still admitted.
        async with a.open("user:1", RoomRole.HOST) as host, a.open("user:2") as guest:
            assert (await guest.expect("welcome"))["waiting"] is False
            await host.expect("welcome")


async def test_a_burst_of_joins_larger_than_the_connection_pool_gets_everyone_in(
    settings: Settings, namespace: str
) -> None:
    bus = RedisBus(REDIS_URL, namespace=namespace, max_connections=4)
    members = [
        room.Member(f"user:{i}", f"U{i}", "CHU", RoomRole.HOST, "specialist", f"c{i}", bus.instance)
        for i in range(40)
    ]
    try:
        joined = await asyncio.wait_for(
            asyncio.gather(
                *(
                    bus.update(
                        SID + i % 4,
                        lambda state, alive, m=m: room.join(state, m, max_people=50, alive=alive),
                    )
                    for i, m in enumerate(members)
                )
            ),
            WAIT_S * 3,
        )
        assert all(j.refused is None for j in joined)
        for offset in range(4):
            state = await bus.apply(SID + offset, lambda s, _alive: room.Outcome(s), writes=False)
            assert len(state.state.members) == 10
    finally:
        await bus.close()
