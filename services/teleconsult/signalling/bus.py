"""Where rooms live and how messages reach sockets: in memory, or shared by replicas through Redis.

A bus stores each room's state (`room.RoomState`), applies the pure room
rules to it atomically, and carries the resulting deliveries to the sockets,
wherever they are:

- `MemoryBus` (`signalling_url = "memory://"`, the embedded default): one
  process, state in a dict under a lock, deliveries straight to local sockets.
- `RedisBus` (a Redis URL): the state of room N is one JSON value at
  `<ns>{room:N}`, changed under WATCH/MULTI (optimistic, retried), so any
  replica can apply any rule; each replica subscribes to its own pub/sub
  channel `<ns>instance:<id>` and deliveries for sockets held elsewhere are
  published there. No replica holds state another needs.

A replica that dies leaves members behind. Each socket has a liveness entry
(`<ns>{room:N}:alive`, a sorted set of socket id to expiry) that its replica
refreshes every `liveness_s / 3`; the next join or heartbeat in the room
prunes members whose entry lapsed and tells the others they left. A socket
whose entry was pruned while it still lives (its replica stalled) is closed
with 4001 so its client reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections import defaultdict, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from services.teleconsult.signalling import room
from services.teleconsult.signalling.room import Delivery, RoomState
from shared.settings import Settings

__all__ = ["CLOSE_EXPIRED", "CLOSE_SLOW", "Bus", "MemoryBus", "Outbox", "RedisBus", "connect"]

log = logging.getLogger("jisr.teleconsult.signalling")

CLOSE_EXPIRED = 4001
"""This socket's place in the room lapsed (its replica stalled); reconnect."""
CLOSE_SLOW = 1013
"""The client reads too slowly: its backlog of messages overflowed (RFC 6455 "try again later")."""
ROOM_TTL_S = 24 * 3600
"""A room's state outlives its last socket by a day, so admission survives a break."""
SWEEP_S = 60.0
REDIS_CONNECTIONS = 64
"""Per replica, the pub/sub reader's included: enough for a burst of joins, bounded for Redis."""
REDIS_WAIT_S = 10.0
OUTBOX_LIMIT = 512
UPDATE_ATTEMPTS = 100


@dataclass(frozen=True, slots=True)
class Outgoing:
    message: dict[str, Any] | None
    close: int | None = None
    reason: str = ""


class Outbox:
    """Messages waiting for one socket's writer; a close ends it, overflowing closes with 1013."""

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self._items: deque[Outgoing] = deque()
        self._ready = asyncio.Event()
        self._limit = limit
        self.closed = False
        self.live = False
        """Set once the socket is a member: only then does its replica keep its place alive."""

    def put(self, item: Outgoing) -> None:
        if self.closed:
            return
        if len(self._items) >= self._limit:
            self._items.clear()
            item = Outgoing(None, CLOSE_SLOW, "too many unread messages")
        self._items.append(item)
        self.closed = item.close is not None
        self._ready.set()

    async def get(self) -> Outgoing:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class _Result(Protocol):
    @property
    def state(self) -> RoomState: ...

    @property
    def deliveries(self) -> tuple[Delivery, ...]: ...


R = TypeVar("R", bound=_Result)
Op = Callable[[RoomState, Collection[str]], R]
"""A room rule: the state and the sockets known alive, to a result holding the next state."""


class Bus(ABC):
    """Room state plus delivery; `update` is the only way state changes."""

    def __init__(self, instance: str | None = None) -> None:
        self.instance = instance or uuid.uuid4().hex
        self._local: dict[str, tuple[int, Outbox]] = {}

    def attach(self, session_id: int, conn: str, outbox: Outbox) -> None:
        """Route deliveries for socket `conn` (of room `session_id`) to `outbox`."""
        self._local[conn] = (session_id, outbox)

    def detach(self, conn: str) -> None:
        self._local.pop(conn, None)

    def local_rooms(self) -> dict[int, list[str]]:
        rooms: dict[int, list[str]] = defaultdict(list)
        for conn, (session_id, outbox) in self._local.items():
            if outbox.live:
                rooms[session_id].append(conn)
        return dict(rooms)

    async def start(self) -> None:  # noqa: B027 - nothing to start in memory
        """Connect and subscribe; idempotent."""

    async def close(self) -> None:  # noqa: B027
        """Let go of connections and background tasks."""

    @abstractmethod
    async def apply(self, session_id: int, op: Op[R], *, writes: bool = True) -> R:
        """Run `op` on the room atomically and store its state (unless `writes` is False)."""

    async def update(self, session_id: int, op: Op[R], *, writes: bool = True) -> R:
        """`apply`, then deliver what the result says to whichever replica holds each socket."""
        result = await self.apply(session_id, op, writes=writes)
        await self.deliver(result.deliveries)
        return result

    async def deliver(self, deliveries: Collection[Delivery]) -> None:
        remote: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for d in deliveries:
            item = Outgoing(d.message, d.close, d.reason)
            if d.member.instance == self.instance:
                self._deliver_locally(d.member.conn, item)
            else:
                remote[d.member.instance].append(
                    {
                        "conn": d.member.conn,
                        "message": d.message,
                        "close": d.close,
                        "reason": d.reason,
                    }
                )
        for instance, items in remote.items():
            await self._publish(instance, items)

    def _deliver_locally(self, conn: str, item: Outgoing) -> None:
        held = self._local.get(conn)
        if held is not None:
            held[1].put(item)

    async def _publish(self, instance: str, items: list[dict[str, Any]]) -> None:
        log.warning(
            "signalling: no replica %s on this bus; %d messages dropped", instance, len(items)
        )


class MemoryBus(Bus):
    """One process: rooms in a dict, every socket local."""

    def __init__(self, instance: str | None = None) -> None:
        super().__init__(instance)
        self._rooms: dict[int, tuple[RoomState, float]] = {}
        self._lock = asyncio.Lock()
        self._swept = time.monotonic()

    async def apply(self, session_id: int, op: Op[R], *, writes: bool = True) -> R:
        async with self._lock:
            now = time.monotonic()
            state = self._rooms.get(session_id, (RoomState(), now))[0]
            result = op(state, self._local.keys())
            if writes and result.state is not state:
                self._rooms[session_id] = (result.state, now)
            if now - self._swept > SWEEP_S:
                self._sweep(now)
            return result

    def _sweep(self, now: float) -> None:
        """Forget rooms nobody is in and nobody touched for `ROOM_TTL_S`, as Redis expires them."""
        self._swept = now
        for session_id, (state, touched) in list(self._rooms.items()):
            if not state.members and now - touched > ROOM_TTL_S:
                del self._rooms[session_id]


class RedisBus(Bus):
    """Replicas sharing rooms through one Redis: state under WATCH/MULTI, delivery by pub/sub."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "jisr:signalling:",
        instance: str | None = None,
        liveness_s: float = 15.0,
        max_connections: int = REDIS_CONNECTIONS,
    ) -> None:
        super().__init__(instance)
        self.namespace = namespace
        self.liveness_s = liveness_s
        # Callers queue for a connection rather than fail when every one is busy.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=REDIS_WAIT_S
        )
        self.redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = asyncio.Lock()

    def _key(self, session_id: int) -> str:
        return f"{self.namespace}{{room:{session_id}}}"

    def _channel(self, instance: str) -> str:
        return f"{self.namespace}instance:{instance}"

    async def start(self) -> None:
        async with self._started:
            if self._pubsub is not None:
                return
            pubsub = self.redis.pubsub()
            await pubsub.subscribe(self._channel(self.instance))
            # Wait for the confirmation: nothing may be published to us before it.
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is not None and message["type"] == "subscribe":
                    break
            self._pubsub = pubsub
            self._tasks = [
                asyncio.create_task(self._listen(), name="signalling-listen"),
                asyncio.create_task(self._beat(), name="signalling-heartbeat"),
            ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pubsub = None
        await self.redis.aclose(close_connection_pool=True)

    async def apply(self, session_id: int, op: Op[R], *, writes: bool = True) -> R:
        key, alive_key = self._key(session_id), self._key(session_id) + ":alive"
        if not writes:
            raw = await self.redis.get(key)
            state = room.loads(raw)
            return op(state, {m.conn for m in state.members.values()})
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(UPDATE_ATTEMPTS):
                try:
                    # One connection per update (the pipeline's): a second one taken
                    # here would deadlock a burst of updates on a bounded pool.
                    await pipe.watch(key)
                    state = room.loads(await pipe.get(key))
                    now = time.time()
                    alive = {_text(c) for c in await pipe.zrangebyscore(alive_key, now, "+inf")}
                    result = op(state, alive)
                    if result.state is state:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return result
                    before = {m.conn for m in state.members.values()}
                    after = {m.conn for m in result.state.members.values()}
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, room.dumps(result.state), ex=ROOM_TTL_S)
                    if after - before:
                        pipe.zadd(alive_key, dict.fromkeys(after - before, now + self.liveness_s))
                    if before - after:
                        pipe.zrem(alive_key, *(before - after))
                    pipe.expire(alive_key, ROOM_TTL_S)
                    await pipe.execute()
                    return result
                except WatchError:
                    continue
        raise RuntimeError(f"room {session_id} stayed contended for {UPDATE_ATTEMPTS} attempts")

    async def _publish(self, instance: str, items: list[dict[str, Any]]) -> None:
        await self.redis.publish(self._channel(instance), json.dumps(items))

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("signalling: reading the replica channel failed")
                await asyncio.sleep(1.0)  # Redis is away; try again shortly
                continue
            if message is None or message["type"] != "message":
                continue
            try:
                items = json.loads(message["data"])
                for item in items:
                    self._deliver_locally(
                        item["conn"], Outgoing(item["message"], item["close"], item["reason"])
                    )
            except (ValueError, KeyError, TypeError):
                log.warning("signalling: a malformed delivery on the replica channel was dropped")

    async def heartbeat(self) -> None:
        """Refresh this replica's sockets, close those whose place lapsed, prune the dead."""
        rooms = self.local_rooms()
        now = time.time()
        for session_id, conns in rooms.items():
            alive_key = self._key(session_id) + ":alive"
            async with self.redis.pipeline(transaction=False) as pipe:
                for conn in conns:
                    pipe.zadd(alive_key, {conn: now + self.liveness_s}, xx=True, ch=True)
                pipe.zcount(alive_key, "-inf", now)
                *refreshed, lapsed = await pipe.execute()
            for conn, changed in zip(conns, refreshed, strict=True):
                if not changed:
                    self._deliver_locally(
                        conn, Outgoing(None, CLOSE_EXPIRED, "this connection lapsed")
                    )
            if lapsed:  # only then is there someone to prune (no transaction otherwise)
                await self.update(session_id, room.prune)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.liveness_s / 3)
            try:
                await self.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("signalling: heartbeat failed")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def connect(settings: Settings, *, namespace: str = "jisr:signalling:") -> Bus:
    """The bus `settings.signalling_url` names (not started)."""
    url = settings.signalling_url
    if url.startswith("memory://"):
        return MemoryBus()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBus(url, namespace=namespace)
    raise ValueError(f"JISR_SIGNALLING_URL: unsupported scheme in {url!r} (memory:// or redis://)")
