"""Clients submitting referrals in parallel with Idempotency-Keys, retrying what is retryable."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.failure.scenario import referral

RESTART_AFTER = 10  # accepted submissions before the test breaks something
DEADLINE = 90.0


class Burst:
    """Clients submitting in parallel; what they were answered, in order."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        headers: dict[str, str],
        body: Callable[[str], dict[str, Any]] = referral,
    ) -> None:
        self.http, self.headers, self.body = http, headers, body
        self.accepted: dict[str, dict[str, Any]] = {}
        self.refused: list[httpx.Response] = []
        self.enough = asyncio.Event()

    async def submit(self, key: str) -> None:
        end = time.monotonic() + DEADLINE
        while True:
            try:
                response = await self.http.post(
                    "/api/referrals",
                    json=self.body(key),
                    headers={**self.headers, "Idempotency-Key": key},
                )
            except httpx.TransportError as exc:  # the app itself must stay up
                raise AssertionError(f"the app dropped the connection: {exc!r}") from exc
            if response.status_code == 201:
                self.accepted[key] = response.json()
                if len(self.accepted) >= RESTART_AFTER:
                    self.enough.set()
                return
            self.refused.append(response)
            assert response.status_code in (409, 503), response.text
            assert time.monotonic() < end, f"{key} still refused: {response.text}"
            await asyncio.sleep(0.05)  # the client's pause before a retry, not a wait on the test

    async def client(self, keys: list[str]) -> None:
        for key in keys:
            await self.submit(key)

    async def around(
        self, keys: list[str], clients: int, breaking: Callable[[], Awaitable[None]]
    ) -> None:
        """Submit `keys` with `clients` in parallel; once some are in, break something."""
        tasks = [asyncio.create_task(self.client(keys[i::clients])) for i in range(clients)]
        await asyncio.wait_for(self.enough.wait(), DEADLINE)
        assert len(self.accepted) < len(keys), "the burst ended before the failure"
        await breaking()
        await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE)
        assert set(self.accepted) == set(keys)

    def clients_got_retryable_problems(self) -> None:
        """Something was refused, and every refusal was a problem a client may retry."""
        assert self.refused, "no request met the failure: nothing shows what clients are told"
        statuses = Counter(r.status_code for r in self.refused)
        assert statuses[503] >= 1, statuses
        for response in self.refused:
            assert response.headers["content-type"].startswith("application/problem+json")
            if response.status_code == 503:
                assert response.json()["type"] == "urn:jisr:problem:service-unavailable"
                assert int(response.headers["retry-after"]) > 0
