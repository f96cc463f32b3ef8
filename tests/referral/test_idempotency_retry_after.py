"""A client told that its Idempotency-Key is still in progress is told when to try again.

The claim is a 10 s lease; the work behind it takes well under a second, so a
short `Retry-After` (RFC 9110 §10.2.3) lets a well-behaved client come back
when the answer is likely stored instead of hammering or giving up.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from services.referral.referrals import idempotency
from tests.failure.scenario import Partners, referral
from tests.failure.test_idempotency_lease import strand, submit, world

__all__ = ["world"]  # the fixture, imported so pytest finds it here


async def test_a_key_in_progress_is_409_with_a_short_retry_after(
    world: tuple[Partners, httpx.AsyncClient],
) -> None:
    p, client = world
    await strand(p, "busy", age=timedelta(0))

    retry = await submit(p, client, "busy")

    assert retry.status_code == 409, retry.text
    assert retry.headers["content-type"].startswith("application/problem+json")
    assert retry.json()["rule"] == "idempotency_in_progress"
    wait = int(retry.headers["retry-after"])
    assert 1 <= wait <= idempotency.LEASE.total_seconds()


async def test_another_caller_with_the_same_key_is_not_told_to_wait(
    world: tuple[Partners, httpx.AsyncClient],
) -> None:
    """Keys belong to their caller: a stranger gets their own answer (a refusal), not the 409."""
    p, client = world
    await strand(p, "busy", age=timedelta(0))

    refused = await client.post(
        "/api/referrals",
        json=referral("busy"),
        headers=p.headers(p.stranger, **{"Idempotency-Key": "busy"}),
    )
    unknown = await client.post("/api/referrals", json={}, headers={"Idempotency-Key": "busy"})

    assert refused.status_code == 403, refused.text
    assert refused.json()["rule"] == "no_eligible_provider"
    assert unknown.status_code == 401
    assert "retry-after" not in refused.headers and "retry-after" not in unknown.headers
