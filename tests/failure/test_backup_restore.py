"""A backup with pg_dump, restored with pg_restore into a new database, runs the acceptance path.

The database has seen some work (an agreement with a quota, a referral offered,
its units held in the usage ledger, audit events). After the restore the app
starts on the copy, the provider's specialist accepts the referral, a new
referral can be submitted (sequences restored), the quota counts the restored
ledger, and audit events are still append-only (triggers restored).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from sqlalchemy import select

from jisr.app import create_app
from shared.registry.models import UsageEntry
from tests.failure.parts import AppServer, PgCluster
from tests.failure.scenario import SPECIALTY, Partners, app_env, partners, referral

QUOTA = 2


async def test_a_restored_backup_accepts_the_offered_referral_and_takes_new_ones(
    cluster: PgCluster, cluster_database: str, signing_key: Path, tmp_path: Path
) -> None:
    p: Partners = await partners(tmp_path, signing_key, cluster_database, quota=QUOTA)
    transport = httpx.ASGITransport(app=create_app(p.platform))
    async with httpx.AsyncClient(transport=transport, base_url="http://jisr.test") as before:
        offered = await before.post(
            "/api/referrals", json=referral(1), headers=p.headers(p.referrer)
        )
    assert offered.status_code == 201, offered.text
    assert offered.json()["status"] == "offered"
    referral_id = offered.json()["id"]
    await p.platform.database.dispose()

    restored_url = await asyncio.to_thread(_dump_and_restore, cluster, cluster_database)
    restored: Partners = await partners_on(p, restored_url)
    app = AppServer(app_env(tmp_path, signing_key, restored_url), tmp_path / "app.log")
    await asyncio.to_thread(app.start)
    try:
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as http:
            await _acceptance_works(http, restored, referral_id)
            await _new_referrals_and_the_quota_work(http, restored, referral_id)
    finally:
        await asyncio.to_thread(app.stop)
        await restored.platform.database.dispose()
    await _audit_is_still_append_only(cluster, restored_url)


def _dump_and_restore(cluster: PgCluster, url: str) -> str:
    """`pg_dump -Fc` of the database, `pg_restore` into a new one; the new one's URL."""
    source = url.rsplit("/", 1)[1]
    target = f"{source}_restored"
    dump = cluster.folder / f"{source}.dump"  # the tools run as the cluster's owner
    cluster.tool("pg_dump", "-Fc", "-d", source, "-f", str(dump))
    cluster.tool("createdb", target)
    cluster.tool("pg_restore", "--exit-on-error", "--no-owner", "-d", target, str(dump))
    return cluster.url(target)


async def partners_on(p: Partners, url: str) -> Partners:
    """The same people and institutions, read through a platform on the restored database."""
    from shared.platform import Platform
    from tests.factories import Factory

    platform = Platform.from_settings(p.platform.settings.model_copy(update={"database_url": url}))
    return Partners(
        platform,
        Factory(platform),
        p.origin,
        p.provider,
        p.referrer,
        p.specialist,
        p.stranger,
    )


async def _acceptance_works(http: httpx.AsyncClient, p: Partners, referral_id: int) -> None:
    stranger = await http.post(
        f"/api/referrals/{referral_id}/accept", json={}, headers=p.headers(p.stranger)
    )
    assert stranger.status_code == 404, stranger.text
    referrer = await http.post(
        f"/api/referrals/{referral_id}/accept", json={}, headers=p.headers(p.referrer)
    )
    assert referrer.status_code == 403, referrer.text

    accepted = await http.post(
        f"/api/referrals/{referral_id}/accept", json={}, headers=p.headers(p.specialist)
    )

    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    history = await http.get(f"/api/referrals/{referral_id}/history", headers=p.headers(p.referrer))
    assert history.status_code == 200, history.text
    assert "accepted" in history.text
    async with p.platform.database.transaction() as session:
        states = list(
            await session.scalars(
                select(UsageEntry.state).where(UsageEntry.resource_id == str(referral_id))
            )
        )
    assert states == ["consumed"]


async def _new_referrals_and_the_quota_work(
    http: httpx.AsyncClient, p: Partners, first_id: int
) -> None:
    second = await http.post("/api/referrals", json=referral(2), headers=p.headers(p.referrer))
    assert second.status_code == 201, second.text
    assert second.json()["id"] > first_id
    assert second.json()["status"] == "offered"
    decision = await http.get(
        "/api/entitlements/decide",
        params={"provider": p.provider.code, "service": "second_opinion", "specialty": SPECIALTY},
        headers=p.headers(p.referrer),
    )
    assert decision.status_code == 200, decision.text
    assert decision.json()["allowed"] is False  # both units of the quota are held


async def _audit_is_still_append_only(cluster: PgCluster, url: str) -> None:
    conn = await asyncpg.connect(cluster.dsn(url.rsplit("/", 1)[1]))
    try:
        assert await conn.fetchval("SELECT count(*) FROM audit_events") > 0
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE audit_events SET action = action")
    finally:
        await conn.close()
