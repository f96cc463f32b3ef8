"""Idempotency-Key for submissions (IETF draft "The Idempotency-Key HTTP Header Field").

The key is claimed in a transaction of its own before the work starts, so a
concurrent duplicate finds it at once and gets 409; the answer is stored in
the same transaction as the work, so a replay after completion returns it;
the same key with another body is 422; keys belong to the caller. If the
work fails, the claim is withdrawn and the client may retry with the key.

A claim is a lease: when the database goes away mid-request, neither the work
nor the withdrawal can be written and the claim stays "started". A retry after
`LEASE` takes it over (a new `created_at`); the old request, should it still
be running, then fails to complete (its `created_at` no longer matches, read
under a row lock) and rolls its work back, so the key still yields one referral.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral.referrals import repository as repo
from services.referral.referrals.models import IdempotencyKey
from shared.db import Database, utcnow
from shared.problems import BadRequest, Conflict, Unprocessable

MAX_KEY = 255
LEASE = timedelta(seconds=10)
"""How long a started claim holds its key; far longer than a submission takes."""
RETRY_AFTER_S = 1
"""What a 409 in progress tells the client to wait: a submission takes well under a second."""


class InProgress(Conflict):
    """Another request holds this key now: 409 with `Retry-After` (RFC 9110 §10.2.3)."""

    headers = MappingProxyType({"Retry-After": str(RETRY_AFTER_S)})

    def __init__(self, detail: str) -> None:
        super().__init__(detail, rule="idempotency_in_progress")


def fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


async def claim(
    database: Database, *, user_id: int, key: str, body: Any
) -> IdempotencyKey | dict[str, Any]:
    """Claim `key`; or, if it already holds a finished answer for the same body, that answer."""
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise BadRequest("the Idempotency-Key must be 1 to 255 printable characters")
    mark = fingerprint(body)
    try:
        async with database.transaction() as session:
            row = IdempotencyKey(user_id=user_id, key=key, fingerprint=mark, state="started")
            session.add(row)
        return row
    except IntegrityError:
        pass
    async with database.transaction() as session:
        existing = await repo.idempotency_key(session, user_id, key)
    if existing is None:  # withdrawn between our insert and our read: let the client retry
        raise InProgress("a request with this Idempotency-Key is being retried; try again")
    if existing.fingerprint != mark:
        raise Unprocessable("this Idempotency-Key was used with a different request body")
    if existing.state != "done" and existing.created_at <= utcnow() - LEASE:
        taken = await _take_over(database, existing)
        if taken is not None:
            return taken
    if existing.state != "done" or existing.body is None:
        raise InProgress("a request with this Idempotency-Key is still in progress")
    return {"status_code": existing.status_code, "body": existing.body}


async def _take_over(database: Database, stale: IdempotencyKey) -> IdempotencyKey | None:
    """Renew a claim whose lease ran out; None when another retry renewed it first."""
    renewed = utcnow()
    async with database.transaction() as session:
        result = await session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.id == stale.id,
                IdempotencyKey.state == "started",
                IdempotencyKey.created_at == stale.created_at,
            )
            .values(created_at=renewed)
        )
    if getattr(result, "rowcount", 0) != 1:
        return None
    stale.created_at = renewed
    return stale


async def complete(
    session: AsyncSession, row: IdempotencyKey, *, status_code: int, body: Any
) -> None:
    """Store the answer in the work's own transaction, if the claim is still ours."""
    stored = await session.scalar(
        select(IdempotencyKey)
        .where(IdempotencyKey.id == row.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if stored is None or stored.state != "started" or stored.created_at != row.created_at:
        raise InProgress(
            "a retry with this Idempotency-Key took over this request; its answer stands"
        )
    stored.state, stored.status_code, stored.body = "done", status_code, body
    await session.flush()


async def withdraw(database: Database, row: IdempotencyKey) -> None:
    """Give the key back, unless a retry has taken it over since."""
    async with database.transaction() as session:
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.id == row.id,
                IdempotencyKey.state == "started",
                IdempotencyKey.created_at == row.created_at,
            )
        )
