"""PostgreSQL restarted (`pg_ctl restart -m fast`) in the middle of a burst of submissions.

The app runs as its own process on a cluster of the test's own. Clients submit
with an Idempotency-Key and retry what gets a retryable answer. Afterwards every
referral a client saw accepted exists exactly once, replaying each key returns
the same referral, and what clients got during the restart was a 503 problem
with Retry-After, never a 500.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from services.referral.referrals.models import Referral
from tests.failure.parts import AppServer, PgCluster
from tests.failure.scenario import Partners, app_env, partners, referral

SUBMISSIONS = 40
CLIENTS = 8
RESTART_AFTER = 10  # accepted submissions before the restart begins
DEADLINE = 90.0


class Burst:
    """Clients submitting in parallel; what they were answered, in order."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.http, self.headers = http, headers
        self.accepted: dict[str, dict[str, Any]] = {}
        self.refused: list[httpx.Response] = []
        self.enough = asyncio.Event()

    async def submit(self, key: str) -> None:
        end = time.monotonic() + DEADLINE
        while True:
            try:
                response = await self.http.post(
                    "/api/referrals",
                    json=referral(key),
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


async def test_a_postgres_restart_during_a_burst_loses_no_accepted_referral(
    cluster: PgCluster, cluster_database: str, signing_key: Path, tmp_path: Path
) -> None:
    p: Partners = await partners(tmp_path, signing_key, cluster_database)
    app = AppServer(app_env(tmp_path, signing_key, cluster_database), tmp_path / "app.log")
    await asyncio.to_thread(app.start)
    try:
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as http:
            burst = Burst(http, p.headers(p.referrer))
            keys = [f"burst-{n}" for n in range(SUBMISSIONS)]
            clients = [asyncio.create_task(burst.client(keys[i::CLIENTS])) for i in range(CLIENTS)]
            await asyncio.wait_for(burst.enough.wait(), DEADLINE)
            assert len(burst.accepted) < SUBMISSIONS, "the burst ended before the restart"
            await asyncio.to_thread(cluster.restart)
            await asyncio.wait_for(asyncio.gather(*clients), DEADLINE)

            assert set(burst.accepted) == set(keys)
            await _every_accepted_referral_exists_once(p, http, burst)
            _clients_got_retryable_problems(burst.refused)
            # A stranger's institution sees none of them.
            some = next(iter(burst.accepted.values()))["id"]
            stranger = await http.get(f"/api/referrals/{some}", headers=p.headers(p.stranger))
            assert stranger.status_code == 404, stranger.text
    finally:
        await asyncio.to_thread(app.stop)
        await p.platform.database.dispose()


async def _every_accepted_referral_exists_once(
    p: Partners, http: httpx.AsyncClient, burst: Burst
) -> None:
    ids = [body["id"] for body in burst.accepted.values()]
    assert len(set(ids)) == SUBMISSIONS
    async with p.platform.database.transaction() as session:
        stored = Counter(
            await session.scalars(
                select(Referral.question).where(Referral.origin_id == p.origin.id)
            )
        )
        assert (
            await session.scalar(select(func.count()).where(Referral.origin_id == p.origin.id))
            == SUBMISSIONS
        )
    assert stored == Counter(referral(key)["question"] for key in burst.accepted)
    for key, body in burst.accepted.items():
        replay = await http.post(
            "/api/referrals",
            json=referral(key),
            headers=p.headers(p.referrer, **{"Idempotency-Key": key}),
        )
        assert replay.status_code == 201, replay.text
        assert replay.headers.get("idempotent-replayed") == "true"
        assert replay.json()["id"] == body["id"]
        seen = await http.get(f"/api/referrals/{body['id']}", headers=p.headers(p.specialist))
        assert seen.status_code == 200, seen.text
        assert seen.json()["status"] == "offered"


def _clients_got_retryable_problems(refused: list[httpx.Response]) -> None:
    assert refused, "no request met the restart: nothing shows what clients are told"
    statuses = Counter(r.status_code for r in refused)
    assert statuses[503] >= 1, statuses
    for response in refused:
        assert response.headers["content-type"].startswith("application/problem+json")
        if response.status_code == 503:
            assert response.json()["type"] == "urn:jisr:problem:service-unavailable"
            assert int(response.headers["retry-after"]) > 0
