"""An Idempotency-Key claim stranded by a lost database connection is a lease a retry takes over.

When the database goes away in the middle of a submission, neither the work nor
the withdrawal of the claim can be written, and the key stays "started". These
tests strand a claim the way that happens (claimed, never completed or
withdrawn) and age it past the lease instead of waiting for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from jisr.app import create_app
from services.referral.referrals import idempotency
from services.referral.referrals import schemas as s
from services.referral.referrals.models import IdempotencyKey, Referral
from shared.problems import Conflict
from tests.failure.scenario import Partners, partners, referral


@pytest.fixture
async def world(
    tmp_path: Path, signing_key: Path, database_url: str
) -> AsyncIterator[tuple[Partners, httpx.AsyncClient]]:
    p = await partners(tmp_path, signing_key, database_url)
    transport = httpx.ASGITransport(app=create_app(p.platform))
    async with httpx.AsyncClient(transport=transport, base_url="http://jisr.test") as client:
        yield p, client
    await p.platform.database.dispose()


async def strand(p: Partners, key: str, *, age: timedelta) -> IdempotencyKey:
    """Claim `key` as a submission would, then never finish: as after a lost connection."""
    body = s.ReferralCreate.model_validate(referral(key)).model_dump(mode="json")
    claim = await idempotency.claim(p.platform.database, user_id=p.referrer.id, key=key, body=body)
    assert isinstance(claim, IdempotencyKey)
    async with p.platform.database.transaction() as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == claim.id)
            .values(created_at=claim.created_at - age)
        )
    claim.created_at -= age
    return claim


async def referrals(p: Partners) -> int:
    async with p.platform.database.transaction() as session:
        found = await session.scalar(select(func.count()).where(Referral.origin_id == p.origin.id))
        return int(found or 0)


async def submit(p: Partners, client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post(
        "/api/referrals",
        json=referral(key),
        headers=p.headers(p.referrer, **{"Idempotency-Key": key}),
    )


async def test_a_claim_within_its_lease_is_still_in_progress(
    world: tuple[Partners, httpx.AsyncClient],
) -> None:
    p, client = world
    await strand(p, "young", age=idempotency.LEASE / 2)

    retry = await submit(p, client, "young")

    assert retry.status_code == 409, retry.text
    assert retry.json()["rule"] == "idempotency_in_progress"
    assert await referrals(p) == 0


async def test_a_stranded_claim_past_its_lease_is_taken_over_once(
    world: tuple[Partners, httpx.AsyncClient],
) -> None:
    p, client = world
    await strand(p, "stranded", age=idempotency.LEASE + timedelta(seconds=1))

    retry = await submit(p, client, "stranded")
    replay = await submit(p, client, "stranded")

    assert retry.status_code == 201, retry.text
    assert replay.status_code == 201 and replay.json()["id"] == retry.json()["id"]
    assert replay.headers["idempotent-replayed"] == "true"
    assert await referrals(p) == 1
    other = await client.post(
        "/api/referrals",
        json=referral("another body"),
        headers=p.headers(p.referrer, **{"Idempotency-Key": "stranded"}),
    )
    assert other.status_code == 422, other.text  # the key still belongs to its first body


async def test_the_request_whose_claim_was_taken_over_can_neither_complete_nor_withdraw(
    world: tuple[Partners, httpx.AsyncClient],
) -> None:
    p, client = world
    slow = await strand(p, "slow", age=idempotency.LEASE + timedelta(seconds=1))
    retry = await submit(p, client, "slow")  # takes the lease over and completes
    assert retry.status_code == 201, retry.text

    async with p.platform.database.transaction() as session:
        with pytest.raises(Conflict):
            await idempotency.complete(session, slow, status_code=201, body={"id": -1})
    await idempotency.withdraw(p.platform.database, slow)

    replay = await submit(p, client, "slow")
    assert replay.status_code == 201 and replay.json()["id"] == retry.json()["id"]
