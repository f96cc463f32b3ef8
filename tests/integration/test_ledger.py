"""The usage ledger: quotas consumed, released, and never over-consumed under concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from shared import audit
from shared.audit import AuditEvent
from shared.entitlements.model import ServiceKind, UsageState
from shared.platform import Platform
from shared.problems import EntitlementRefused
from shared.registry import ledger
from shared.registry.models import UsageEntry
from tests.factories import Factory

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
ACTOR = audit.Actor(username="test")


async def twinning(factory: Factory, quota: int, period: str = "quarter") -> tuple[int, int]:
    ouargla = await factory.institution()
    setif = await factory.institution()
    await factory.agreement(
        ouargla,
        setif,
        valid_from=date(2025, 1, 1),
        lines=[
            {
                "service": "teleconsultation",
                "specialties": ["paediatric_surgery"],
                "quota": quota,
                "period": period,
            }
        ],
    )
    return ouargla.id, setif.id


async def take(
    platform: Platform, requester: int, provider: int, resource: str, at: datetime = NOW
) -> UsageEntry:
    async with platform.database.transaction() as session:
        _, entry = await ledger.hold(
            session,
            ACTOR,
            requester=requester,
            provider=provider,
            service=ServiceKind.TELECONSULTATION,
            specialty="paediatric_surgery",
            resource_type="referral",
            resource_id=resource,
            at=at,
        )
        return entry


async def held(platform: Platform) -> int:
    async with platform.database.transaction() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(UsageEntry)
            .where(UsageEntry.state != UsageState.RELEASED)
        )
        return int(count or 0)


async def test_fifty_concurrent_consumers_of_ten_units_give_exactly_ten(
    platform: Platform, factory: Factory
) -> None:
    requester, provider = await twinning(factory, quota=10)

    async def attempt(n: int) -> bool:
        try:
            await take(platform, requester, provider, f"r-{n}")
        except EntitlementRefused as refused:
            assert refused.extra["rule"] == "quota_exhausted"
            return False
        return True

    results = await asyncio.gather(*(attempt(n) for n in range(50)))
    assert results.count(True) == 10
    assert await held(platform) == 10


async def test_a_released_unit_can_be_taken_again(platform: Platform, factory: Factory) -> None:
    requester, provider = await twinning(factory, quota=2)
    await take(platform, requester, provider, "a")
    await take(platform, requester, provider, "b")
    with pytest.raises(EntitlementRefused) as refused:
        await take(platform, requester, provider, "c")
    assert "quota" in str(refused.value.detail)
    async with platform.database.transaction() as session:
        released = await ledger.release(session, ACTOR, resource_type="referral", resource_id="a")
    assert [e.state for e in released] == ["released"]
    entry = await take(platform, requester, provider, "c")
    assert entry.state == UsageState.RESERVED
    assert await held(platform) == 2


async def test_holding_the_same_work_twice_takes_one_unit(
    platform: Platform, factory: Factory
) -> None:
    requester, provider = await twinning(factory, quota=5)
    first = await take(platform, requester, provider, "same")
    second = await take(platform, requester, provider, "same")
    assert first.id == second.id
    assert await held(platform) == 1


async def test_reserved_then_consumed_still_counts_and_a_new_quarter_starts_empty(
    platform: Platform, factory: Factory
) -> None:
    requester, provider = await twinning(factory, quota=1)
    await take(platform, requester, provider, "q1")
    async with platform.database.transaction() as session:
        consumed = await ledger.consume(session, ACTOR, resource_type="referral", resource_id="q1")
    assert [e.state for e in consumed] == ["consumed"]
    with pytest.raises(EntitlementRefused):
        await take(platform, requester, provider, "q1-bis")
    next_quarter = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)
    assert (await take(platform, requester, provider, "q2", at=next_quarter)).state == "reserved"


async def test_every_hold_and_refusal_is_audited(platform: Platform, factory: Factory) -> None:
    requester, provider = await twinning(factory, quota=1)
    await take(platform, requester, provider, "ok")
    with pytest.raises(EntitlementRefused) as refused:
        await take(platform, requester, provider, "too-many")
    assert refused.value.refusal is not None
    await audit.write_refusal(platform.database, refused.value.refusal)
    async with platform.database.transaction() as session:
        events = list(await session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    assert [(e.action, e.outcome, e.rule) for e in events] == [
        ("usage.hold", "allowed", "allowed"),
        ("usage.hold", "refused", "quota_exhausted"),
    ]
    assert events[0].counterpart_id == provider


async def test_consuming_work_that_holds_nothing_is_not_found(
    platform: Platform, factory: Factory
) -> None:
    from shared.problems import NotFound

    async with platform.database.transaction() as session:
        with pytest.raises(NotFound):
            await ledger.consume(session, ACTOR, resource_type="referral", resource_id="ghost")
