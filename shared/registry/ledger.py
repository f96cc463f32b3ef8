"""The usage ledger: quotas are consumed and released here, atomically.

`hold()` decides, then locks the chosen coverage line's row (`SELECT ... FOR
UPDATE` on PostgreSQL; SQLite transactions already hold the write lock from
`BEGIN IMMEDIATE`), counts what is held in the period again under that lock,
and only then writes its row. Fifty consumers racing for ten units therefore
get exactly ten rows, whatever the interleaving.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.db import utcnow
from shared.entitlements.decide import Decision
from shared.entitlements.model import ServiceKind, UsageState
from shared.entitlements.periods import window
from shared.problems import Conflict, EntitlementRefused, NotFound
from shared.registry import repository as repo
from shared.registry import service as registry
from shared.registry.models import Agreement, UsageEntry


async def hold(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    requester: int,
    provider: int,
    service: ServiceKind,
    specialty: str | None,
    resource_type: str,
    resource_id: str,
    state: UsageState = UsageState.RESERVED,
    at: datetime | None = None,
    lang: str = "en",
) -> tuple[Decision, UsageEntry]:
    """Take one unit of the line that `decide()` picks for this work, or refuse.

    Holding the same resource twice returns the row it already holds.
    """
    at = at or utcnow()
    decision = await registry.decide(
        session, requester=requester, provider=provider, service=service, specialty=specialty, at=at
    )
    if decision.allowed and decision.line_id is not None:
        line = await repo.line_for_update(session, decision.line_id)
        agreement = await session.get(Agreement, decision.agreement_id)
        if line is None or agreement is None:  # withdrawn between decide and lock
            raise Conflict("the coverage line changed; try again")
        existing = next(
            (
                u
                for u in await repo.usage_for(session, resource_type, resource_id)
                if u.line_id == line.id
            ),
            None,
        )
        if existing is not None and existing.state != UsageState.RELEASED:
            return decision, existing
        start, end = window(agreement.to_domain(), line.to_domain().period, at)
        used = await repo.held_units(session, line.id, start, end)
        if line.quota is None or used < line.quota:
            entry = existing or UsageEntry(
                line_id=line.id, resource_type=resource_type, resource_id=resource_id, units=1
            )
            # A released row of this line is taken again, possibly for another provider of the line.
            entry.agreement_id, entry.requester_id, entry.provider_id = (
                agreement.id,
                requester,
                provider,
            )
            entry.service, entry.specialty = service.value, specialty
            entry.state, entry.occurred_at, entry.updated_at = state.value, at, utcnow()
            session.add(entry)
            await session.flush()
            await audit.record(
                session,
                actor,
                "usage.hold",
                resource_type=resource_type,
                resource_id=resource_id,
                counterpart_id=provider,
                outcome="allowed",
                rule=decision.rule,
                reasons=decision.explain(lang),
                details={"agreement": agreement.code, "line": line.id, "state": state.value},
            )
            return decision, entry
        # Someone took the last unit between our decision and our lock: decide again.
        decision = await registry.decide(
            session,
            requester=requester,
            provider=provider,
            service=service,
            specialty=specialty,
            at=at,
        )
    reasons = decision.explain(lang)
    raise EntitlementRefused(
        reasons[0] if reasons else decision.rule,
        rule=decision.rule,
        reasons=reasons,
        refusal=audit.Refusal(
            actor,
            "usage.hold",
            rule=decision.rule,
            resource_type=resource_type,
            resource_id=resource_id,
            counterpart_id=provider,
            reasons=reasons,
        ),
    )


async def _set_state(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    resource_type: str,
    resource_id: str,
    to: UsageState,
    allowed_from: frozenset[UsageState],
) -> list[UsageEntry]:
    entries = [
        u
        for u in await repo.usage_for(session, resource_type, resource_id)
        if UsageState(u.state) in allowed_from
    ]
    if not entries:
        raise NotFound(
            f"no {', '.join(sorted(allowed_from))} usage for {resource_type} {resource_id}"
        )
    now = utcnow()
    for entry in entries:
        entry.state, entry.updated_at = to.value, now
        await audit.record(
            session,
            actor,
            f"usage.{to.value}",
            resource_type=resource_type,
            resource_id=resource_id,
            counterpart_id=entry.provider_id,
            details={"line": entry.line_id},
        )
    await session.flush()
    return entries


async def consume(
    session: AsyncSession, actor: audit.Actor, *, resource_type: str, resource_id: str
) -> list[UsageEntry]:
    """A reserved unit becomes consumed (the work was accepted)."""
    return await _set_state(
        session,
        actor,
        resource_type=resource_type,
        resource_id=resource_id,
        to=UsageState.CONSUMED,
        allowed_from=frozenset({UsageState.RESERVED}),
    )


async def release(
    session: AsyncSession, actor: audit.Actor, *, resource_type: str, resource_id: str
) -> list[UsageEntry]:
    """Give the unit back to the quota (declined, cancelled or expired work)."""
    return await _set_state(
        session,
        actor,
        resource_type=resource_type,
        resource_id=resource_id,
        to=UsageState.RELEASED,
        allowed_from=frozenset({UsageState.RESERVED, UsageState.CONSUMED}),
    )
