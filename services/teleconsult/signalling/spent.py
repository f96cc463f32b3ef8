"""Spent join tokens: a join token opens the signalling socket once, on any replica.

A join token that leaks (a log line, a shared screen, a proxy) would otherwise
let a second party open the room as the same peer for the rest of its
lifetime. The socket spends the token's `jti` when it accepts the token; a
second presentation, here or on another replica, finds it spent and is refused
like an expired token. A record is kept as long as the token could still
verify (its `exp` plus the verifier's leeway), then forgotten.

- `MemorySpent`: the embedded default (`signalling_url = "memory://"`), one
  process, a dict of `jti` to the time its record may go.
- `RedisSpent`: `SET <ns>spent:<jti> 1 NX EX <remaining>` on the bus's own
  Redis connections, so every replica sees what any replica spent.

`for_bus(bus)` picks the one that goes with the bus, which `bus.connect` chose
from the settings: rooms and spent tokens always live in the same place.

The session pass (`tokens`, `purpose="pass"`) is not spent here: it never
opens the socket, it buys fresh join tokens until the join window closes.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

import redis.asyncio as aioredis

from services.teleconsult.signalling.bus import Bus, RedisBus
from shared.identity.tokens import LEEWAY_S

__all__ = ["MemorySpent", "RedisSpent", "SpentTokens", "for_bus"]

SWEEP_S = 60.0


def keep_for(expires_at: int, now: float) -> int:
    """Seconds a token expiring at `expires_at` may still verify (leeway included), at least 1."""
    return max(1, int(expires_at + LEEWAY_S - now) + 1)


class SpentTokens(ABC):
    """Which join tokens already opened a socket."""

    @abstractmethod
    async def spend(self, jti: str, *, expires_at: int) -> bool:
        """True the first time `jti` is spent; False for every later attempt while it could verify."""


class MemorySpent(SpentTokens):
    """One process: `jti` to the wall-clock time its record may be forgotten."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._swept = time.time()

    async def spend(self, jti: str, *, expires_at: int) -> bool:
        # No await between the look and the store: two sockets cannot both win.
        now = time.time()
        if now - self._swept > SWEEP_S:
            self._sweep(now)
        until = self._until.get(jti)
        if until is not None and until > now:
            return False
        self._until[jti] = now + keep_for(expires_at, now)
        return True

    def _sweep(self, now: float) -> None:
        self._swept = now
        for jti, until in list(self._until.items()):
            if until <= now:
                del self._until[jti]


class RedisSpent(SpentTokens):
    """Replicas sharing one Redis: the first `SET NX` of a `jti` wins, the key expires with it."""

    def __init__(self, redis: aioredis.Redis, *, namespace: str) -> None:
        self.redis = redis
        self.namespace = namespace

    def key(self, jti: str) -> str:
        return f"{self.namespace}spent:{jti}"

    async def spend(self, jti: str, *, expires_at: int) -> bool:
        ttl = keep_for(expires_at, time.time())
        return bool(await self.redis.set(self.key(jti), b"1", nx=True, ex=ttl))


def for_bus(bus: Bus) -> SpentTokens:
    """Spent tokens kept where `bus` keeps rooms (its Redis, or this process)."""
    if isinstance(bus, RedisBus):
        return RedisSpent(bus.redis, namespace=bus.namespace)
    return MemorySpent()
