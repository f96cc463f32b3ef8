"""PostgreSQL restarted (`pg_ctl restart -m fast`) in the middle of a burst of submissions.

The app runs as its own process on a cluster of the test's own. Clients submit
with an Idempotency-Key and retry what gets a retryable answer. Afterwards every
referral a client saw accepted exists exactly once, replaying each key returns
the same referral, and what clients got during the restart was a 503 problem
with Retry-After, never a 500.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import func, select

from services.referral.referrals.models import Referral
from tests.failure.burst import Burst
from tests.failure.parts import AppServer, PgCluster
from tests.failure.scenario import Partners, app_env, partners, referral

SUBMISSIONS = 40
CLIENTS = 8


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
            await burst.around(keys, CLIENTS, lambda: asyncio.to_thread(cluster.restart))

            await _every_accepted_referral_exists_once(p, http, burst)
            burst.clients_got_retryable_problems()
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
