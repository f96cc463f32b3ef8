"""The database routing paths: the synthetic registry loaded through the ORM, routed per referral.

Two platform paths, each in a fresh session per referral as a request would have:

* `decisions_for + rank`: `shared.registry.service.decisions_for()` (the
  requester's agreements, the held units of each quota line, the institution
  codes) then `routing.rank()` with statistics taken from memory;
* `referrals.service.rank()`: the whole platform path, which also reads
  institutions, agreement kinds, open queues, response times and languages.

and two prototypes that are not platform code, to show what a fix is worth:
`decisions_for()` with one grouped usage query instead of one per quota line,
and agreements from an in-process cache with only that usage query left.

The database is migrated by `shared.migrations.upgrade()` and filled with
the ORM models, with the ids of the synthetic records, so that decisions and
rankings can be compared one to one with the in-memory paths.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import and_, event, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.paths import Context, Indexed, providers, quota_lines
from bench.synthetic import AT, AgreementRecord, Ask, Dataset
from services.referral import routing
from services.referral.referrals import service as referrals
from services.referral.referrals.models import Patient, Referral, ReferralOffer
from shared.db import make_engine
from shared.entitlements import model as m
from shared.entitlements.decide import decide
from shared.entitlements.periods import window
from shared.identity.models import User
from shared.registry import repository as registry_repo
from shared.registry import service as registry
from shared.registry.models import (
    Agreement,
    AgreementParty,
    CoverageLine,
    Institution,
    UsageEntry,
)

Route = Callable[[AsyncSession, Context, Ask], Awaitable[list[routing.Ranked]]]
Prototype = Callable[[AsyncSession, Context, Ask, Indexed], Awaitable[list[routing.Ranked]]]


@dataclass(slots=True)
class Timed:
    path: str
    samples_ns: list[int]
    cpu_ns: list[int]
    """Process CPU time: all of it for SQLite (in-process), the client's share for PostgreSQL."""
    rankings: list[list[routing.Ranked]]
    queries: list[int]


async def decisions_path(session: AsyncSession, context: Context, ask: Ask) -> list[routing.Ranked]:
    decisions = await registry.decisions_for(
        session, requester=ask.requester, service=ask.service, specialty=ask.specialty, at=AT
    )
    return context.rank(ask, decisions)


async def full_path(session: AsyncSession, context: Context, ask: Ask) -> list[routing.Ranked]:
    referral = Referral(  # transient: never added to the session
        origin_id=ask.requester,
        service=ask.service.value,
        specialty=ask.specialty,
        urgency=ask.urgency.value,
        languages=list(ask.languages),
    )
    return await referrals.rank(session, referral, now=AT, exclude=sorted(ask.exclude))


async def batched_usage_path(
    session: AsyncSession, context: Context, ask: Ask, index: Indexed
) -> list[routing.Ranked]:
    """Prototype: `decisions_for()` as it is, but one grouped usage query instead of one per line."""
    rows = await registry_repo.agreements_of(session, ask.requester)
    agreements = [row.to_domain() for row in rows]
    usage = await held_usage(session, agreements, ask)
    wanted = {*providers(agreements, ask.requester), ask.requester}
    names = {
        i: row.code for i, row in (await registry_repo.institutions_by_id(session, wanted)).items()
    }
    decisions = {
        provider: decide(
            ask.requester,
            provider,
            ask.service,
            ask.specialty,
            AT,
            [a for a in agreements if a.role_of(provider) is not None],
            usage,
            names,
        )
        for provider in providers(agreements, ask.requester)
    }
    return context.rank(ask, decisions)


async def cached_path(
    session: AsyncSession, context: Context, ask: Ask, index: Indexed
) -> list[routing.Ranked]:
    """Prototype: agreements from an in-process cache, the database asked only for held units."""
    agreements = index.agreements.get(ask.requester, [])
    usage = await held_usage(session, agreements, ask)
    return context.rank(ask, index.decisions(ask, context.names, usage))


async def held_usage(
    session: AsyncSession, agreements: Sequence[m.Agreement], ask: Ask
) -> list[m.UsageEntry]:
    """Held units of every quota line of the asked service in its current period, in one query."""
    windows = {line.id: window(a, line.period, AT) for a, line in quota_lines(agreements, ask)}
    if not windows:
        return []
    ranges = [
        and_(
            UsageEntry.line_id == line_id,
            UsageEntry.occurred_at >= start,
            *([UsageEntry.occurred_at < end] if end is not None else []),
        )
        for line_id, (start, end) in windows.items()
    ]
    query = (
        select(UsageEntry.line_id, func.sum(UsageEntry.units))
        .where(UsageEntry.state.in_(registry_repo.HELD), or_(*ranges))
        .group_by(UsageEntry.line_id)
    )
    rows = (await session.execute(query)).all()
    return [m.UsageEntry(line_id, windows[line_id][0], int(held)) for line_id, held in rows if held]


PATHS: tuple[tuple[str, Route], ...] = (
    ("decisions_for + rank", decisions_path),
    ("referrals.service.rank()", full_path),
)
PROTOTYPES: tuple[tuple[str, Prototype], ...] = (
    ("decisions_for, 1 usage query", batched_usage_path),
    ("cached agreements + 1 usage query", cached_path),
)


async def run(
    url: str,
    label: str,
    data: Dataset,
    context: Context,
    asks: Sequence[Ask],
    *,
    warmup: int,
    index: Indexed,
) -> tuple[float, list[Timed]]:
    """Load the data at `url`, then time each path; returns the load time (s) and the timings."""
    engine = make_engine(url)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    routes: list[tuple[str, Route]] = [(f"db {label}: {name}", route) for name, route in PATHS]
    routes += [
        (f"prototype {label}: {name}", functools.partial(_bind, prototype, index))
        for name, prototype in PROTOTYPES
    ]
    try:
        started = time.perf_counter()
        await load(maker, data)
        loaded = time.perf_counter() - started
        timed = [
            await _measure(engine, maker, path, route, context, asks, warmup)
            for path, route in routes
        ]
    finally:
        await engine.dispose()
    return loaded, timed


async def _bind(
    prototype: Prototype, index: Indexed, session: AsyncSession, context: Context, ask: Ask
) -> list[routing.Ranked]:
    return await prototype(session, context, ask, index)


async def _measure(
    engine: AsyncEngine,
    maker: async_sessionmaker[AsyncSession],
    path: str,
    route: Route,
    context: Context,
    asks: Sequence[Ask],
    warmup: int,
) -> Timed:
    for ask in asks[:warmup]:
        async with maker() as session:
            await route(session, context, ask)
    samples: list[int] = []
    cpu: list[int] = []
    rankings: list[list[routing.Ranked]] = []
    for ask in asks:
        async with maker() as session:
            await session.connection()  # checkout and BEGIN: paid by any request, routing or not
            started, cpu_started = time.perf_counter_ns(), time.process_time_ns()
            ranking = await route(session, context, ask)
            cpu.append(time.process_time_ns() - cpu_started)
            samples.append(time.perf_counter_ns() - started)
        rankings.append(ranking)
    # Count statements in a separate, untimed pass, so the listener costs nothing above.
    count = [0]

    def _count(*_: Any) -> None:
        count[0] += 1

    queries: list[int] = []
    event.listen(engine.sync_engine, "before_cursor_execute", _count)
    try:
        for ask in asks[:50]:
            async with maker() as session:
                await session.connection()  # the BEGIN is not a query of the path
                count[0] = 0
                await route(session, context, ask)
                queries.append(count[0])
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", _count)
    return Timed(path, samples, cpu, rankings, queries)


async def load(maker: async_sessionmaker[AsyncSession], data: Dataset) -> None:
    """Every synthetic record as ORM rows, with its own id, in one transaction."""
    async with maker() as session:
        session.add_all(
            Institution(
                id=i.id,
                code=i.code,
                name_ar=f"مؤسسة {i.id}",
                name_fr=f"Établissement {i.id}",
                name_en=f"Institution {i.id}",
                country=i.country,
                city=i.city,
                kind=i.kind.value,
                timezone=i.timezone,
            )
            for i in data.institutions
        )
        await session.flush()
        session.add_all(
            User(
                id=s.id,
                username=f"bench-{s.id}",
                display_name=f"Staff {s.id}",
                institution_id=s.institution_id,
                roles=list(s.roles),
                languages=list(s.languages),
                specialties=[],
                disabled=s.disabled,
            )
            for s in data.staff
        )
        await session.flush()
        for record in data.agreements:  # in id order: a renewal comes after what it renews
            session.add(_agreement_row(record))
        await session.flush()
        session.add_all(
            UsageEntry(
                id=u.id,
                line_id=u.line_id,
                agreement_id=u.agreement_id,
                requester_id=u.requester_id,
                provider_id=u.provider_id,
                service=u.service.value,
                resource_type="bench",
                resource_id=str(u.id),
                units=1,
                state=u.state.value,
                occurred_at=u.at,
                updated_at=u.at,
            )
            for u in data.usage
        )
        await session.flush()
        await _add_history(session, data)
        await session.flush()
        await session.commit()


def _agreement_row(record: AgreementRecord) -> Agreement:
    a = record.domain
    lines = sorted(
        [(line, True) for line in a.lines] + [(line, False) for line in record.withdrawn],
        key=lambda pair: pair[0].id,
    )
    return Agreement(
        id=a.id,
        code=a.code,
        title=f"Synthetic agreement {a.id}",
        kind=record.kind.value,
        status=a.status.value,
        valid_from=a.valid_from,
        valid_until=a.valid_until,
        timezone=a.timezone,
        renews_id=a.renews_id,
        parties=[
            AgreementParty(institution_id=p.institution_id, role=p.role.value) for p in a.parties
        ],
        lines=[
            CoverageLine(
                id=line.id,
                service=line.service.value,
                specialties=sorted(line.specialties),
                requesters=sorted(line.requesters),
                providers=sorted(line.providers),
                quota=line.quota,
                period=line.period.value,
                response_hours={k.value: v for k, v in line.response_hours.items()},
                identification=line.data_terms.identification.value,
                consent_required=line.data_terms.consent_required,
                active=active,
            )
            for line, active in lines
        ],
    )


async def _add_history(session: AsyncSession, data: Dataset) -> None:
    session.add_all(
        Patient(
            id=r.id,
            institution_id=r.origin_id,
            local_id=f"P{r.id}",
            name="Synthetic patient",
            sex="F" if r.id % 2 else "M",
            birth_date=date(1950 + r.id % 60, 1 + r.id % 12, 1),
        )
        for r in data.history
    )
    await session.flush()
    session.add_all(
        Referral(
            id=r.id,
            origin_id=r.origin_id,
            created_by_id=r.created_by_id,
            patient_id=r.id,
            question="Synthetic question",
            summary="Synthetic summary",
            specialty=r.specialty,
            urgency=r.urgency.value,
            service=r.service.value,
            languages=[],
            study_uids=[],
            status=r.status.value,
            provider_id=r.provider_id,
            agreement_id=r.agreement_id,
            line_id=r.line_id,
            routing=[],
            tried=[r.provider_id],
            offered_at=r.created_at,
            created_at=r.created_at,
            updated_at=r.responded_at or r.created_at,
        )
        for r in data.history
    )
    await session.flush()
    session.add_all(
        ReferralOffer(
            id=r.id,
            referral_id=r.id,
            provider_id=r.provider_id,
            agreement_id=r.agreement_id,
            line_id=r.line_id,
            offered_at=r.created_at,
            responded_at=r.responded_at,
            outcome=r.outcome,
            paused_s=r.paused_s,
        )
        for r in data.history
    )
