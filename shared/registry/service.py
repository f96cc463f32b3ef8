"""Agreement administration and entitlement decisions over the database.

Functions take `(session, caller, *, ...)`, flush and never commit; every write
is permission-checked and audited in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.db import utcnow
from shared.entitlements.decide import Decision
from shared.entitlements.decide import decide as decide_rule
from shared.entitlements.model import Agreement as DomainAgreement
from shared.entitlements.model import AgreementStatus, PartyRole, ServiceKind, UsageEntry
from shared.entitlements.periods import local_date, window
from shared.identity.deps import Caller
from shared.identity.models import Role
from shared.pagination import PageParams, Pagination, paginate
from shared.problems import Conflict, Forbidden, NotFound, Unprocessable
from shared.registry import repository as repo
from shared.registry import schemas as s
from shared.registry.models import Agreement, AgreementParty, CoverageLine, Institution

# Which status an action moves an agreement to, and from which statuses.
TRANSITIONS: dict[str, tuple[frozenset[AgreementStatus], AgreementStatus]] = {
    "activate": (
        frozenset({AgreementStatus.DRAFT, AgreementStatus.SUSPENDED}),
        AgreementStatus.ACTIVE,
    ),
    "suspend": (frozenset({AgreementStatus.ACTIVE}), AgreementStatus.SUSPENDED),
    "terminate": (
        frozenset({AgreementStatus.DRAFT, AgreementStatus.ACTIVE, AgreementStatus.SUSPENDED}),
        AgreementStatus.TERMINATED,
    ),
}


# Institutions ---------------------------------------------------------------------------


def institution_read(row: Institution, lang: str) -> s.InstitutionRead:
    return s.InstitutionRead(
        id=row.id,
        code=row.code,
        names=s.Names(ar=row.name_ar, fr=row.name_fr, en=row.name_en),
        name=row.name(lang),
        country=row.country,
        city=row.city,
        kind=row.kind,
        timezone=row.timezone,
        imaging_store=row.imaging_store,
    )


async def list_institutions(
    session: AsyncSession, caller: Caller, *, paging: PageParams
) -> tuple[list[Institution], Pagination]:
    """The directory of institutions is visible to every signed-in user."""
    return await paginate(session, repo.institutions(), paging)


async def get_institution(session: AsyncSession, caller: Caller, *, key: str) -> Institution:
    row = await repo.institution_by_key(session, key)
    if row is None:
        raise NotFound(f"no institution {key}")
    return row


async def create_institution(
    session: AsyncSession, caller: Caller, *, data: s.InstitutionCreate
) -> Institution:
    _require_operator_admin(caller, "institution.create")
    if await repo.institution_by_key(session, data.code) is not None:
        raise Conflict(f"an institution with code {data.code} exists already")
    row = Institution(
        code=data.code,
        name_ar=data.names.ar,
        name_fr=data.names.fr,
        name_en=data.names.en,
        country=data.country,
        city=data.city,
        kind=data.kind.value,
        timezone=data.timezone,
        imaging_store=data.imaging_store,
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        caller.actor,
        "institution.create",
        resource_type="institution",
        resource_id=row.id,
        details={"code": row.code},
    )
    return row


# Agreements -----------------------------------------------------------------------------


def _scope(caller: Caller) -> int | None:
    """None (everything) for the operator's admins and auditors, else the caller's institution."""
    return (
        None if caller.operator and caller.has(Role.ADMIN, Role.AUDITOR) else caller.institution_id
    )


async def list_agreements(
    session: AsyncSession,
    caller: Caller,
    *,
    paging: PageParams,
    status: AgreementStatus | None = None,
    party: int | None = None,
) -> tuple[list[Agreement], Pagination]:
    query = repo.agreements(
        visible_to=_scope(caller), status=status.value if status else None, party=party
    )
    return await paginate(session, query, paging)


async def get_agreement(session: AsyncSession, caller: Caller, *, agreement_id: int) -> Agreement:
    row = await repo.agreement(session, agreement_id, visible_to=_scope(caller))
    if row is None:
        raise NotFound(
            f"no agreement {agreement_id}",
            refusal=audit.Refusal(
                caller.actor,
                "agreement.read",
                rule="not_visible",
                resource_type="agreement",
                resource_id=agreement_id,
            ),
        )
    return row


async def agreement_read(
    session: AsyncSession, row: Agreement, lang: str, *, at: datetime | None = None
) -> s.AgreementRead:
    names = await repo.institutions_by_id(session, (p.institution_id for p in row.parties))
    renewals = await repo.renewals_of(session, [row.id])
    domain = row.to_domain()
    at = at or utcnow()
    lines = []
    for line in row.lines:
        start, end = window(domain, line.to_domain().period, at)
        used = await repo.held_units(session, line.id, start, end)
        lines.append(_line_read(line, used))
    return s.AgreementRead(
        id=row.id,
        code=row.code,
        title=row.title,
        kind=row.kind,
        status=row.status,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        timezone=row.timezone,
        renews_id=row.renews_id,
        renewed_by=[r.id for r in renewals],
        parties=[
            s.PartyRead(
                institution_id=p.institution_id,
                institution_code=names[p.institution_id].code,
                institution_name=names[p.institution_id].name(lang),
                role=p.role,
            )
            for p in row.parties
        ],
        coverage=lines,
        created_at=row.created_at,
    )


def _line_read(line: CoverageLine, used: int | None = None) -> s.CoverageLineRead:
    return s.CoverageLineRead(
        id=line.id,
        agreement_id=line.agreement_id,
        service=line.service,
        specialties=list(line.specialties or []),
        requesters=list(line.requesters or []),
        providers=list(line.providers or []),
        quota=line.quota,
        period=line.period,
        response_hours=dict(line.response_hours or {}),
        data_terms=s.DataTermsIn(
            identification=line.identification, consent_required=line.consent_required
        ),
        imaging=s.ImagingTerms.model_validate(line.imaging or {}),
        note=line.note,
        active=line.active,
        used=used,
    )


async def create_agreement(
    session: AsyncSession, caller: Caller, *, data: s.AgreementCreate
) -> Agreement:
    party_ids = [p.institution_id for p in data.parties]
    _require_manager(caller, party_ids, "agreement.create")
    found = await repo.institutions_by_id(session, party_ids)
    missing = sorted(set(party_ids) - set(found))
    if missing:
        raise Unprocessable(f"unknown institutions: {missing}")
    if await repo.agreement_by_code(session, data.code) is not None:
        raise Conflict(f"an agreement with code {data.code} exists already")
    provider = next(p for p in data.parties if p.role.may_provide())
    row = Agreement(
        code=data.code,
        title=data.title,
        kind=data.kind.value,
        status=data.status.value,
        valid_from=data.valid_from,
        valid_until=data.valid_until,
        timezone=data.timezone or found[provider.institution_id].timezone,
        parties=[
            AgreementParty(institution_id=p.institution_id, role=p.role.value) for p in data.parties
        ],
        lines=[],
    )
    for line in data.coverage:
        row.lines.append(_new_line(line, data.parties))
    session.add(row)
    await _flush_unique(session, f"an agreement with code {data.code} exists already")
    await audit.record(
        session,
        caller.actor,
        "agreement.create",
        resource_type="agreement",
        resource_id=row.id,
        details={"code": row.code, "status": row.status, "parties": party_ids},
    )
    return row


def _new_line(
    data: s.CoverageLineCreate, parties: Sequence[s.PartyIn | AgreementParty]
) -> CoverageLine:
    roles = {p.institution_id: PartyRole(p.role) for p in parties}
    for inst in data.requesters:
        if inst not in roles or not roles[inst].may_request():
            raise Unprocessable(f"requester {inst} is not a requesting party of the agreement")
    for inst in data.providers:
        if inst not in roles or not roles[inst].may_provide():
            raise Unprocessable(f"provider {inst} is not a providing party of the agreement")
    return CoverageLine(
        service=data.service.value,
        specialties=sorted(set(data.specialties)),
        requesters=sorted(set(data.requesters)),
        providers=sorted(set(data.providers)),
        quota=data.quota,
        period=data.period.value,
        response_hours=data.response_hours.as_dict(),
        identification=data.data_terms.identification.value,
        consent_required=data.data_terms.consent_required,
        imaging=data.imaging.model_dump(exclude_defaults=True) or None,
        note=data.note,
        active=True,
    )


async def add_coverage_line(
    session: AsyncSession, caller: Caller, *, agreement_id: int, data: s.CoverageLineCreate
) -> CoverageLine:
    row = await get_agreement(session, caller, agreement_id=agreement_id)
    _require_manager(caller, [p.institution_id for p in row.parties], "coverage.create", row)
    if row.status in (AgreementStatus.TERMINATED, AgreementStatus.EXPIRED):
        raise Conflict(f"agreement {row.code} is {row.status}: its coverage can no longer change")
    line = _new_line(data, row.parties)
    row.lines.append(line)
    await session.flush()
    await audit.record(
        session,
        caller.actor,
        "coverage.create",
        resource_type="coverage_line",
        resource_id=line.id,
        details={"agreement": row.code, "service": line.service},
    )
    return line


async def withdraw_coverage_line(
    session: AsyncSession, caller: Caller, *, agreement_id: int, line_id: int
) -> CoverageLine:
    """Withdraw a line: it grants nothing more, and its ledger history stays."""
    row = await get_agreement(session, caller, agreement_id=agreement_id)
    _require_manager(caller, [p.institution_id for p in row.parties], "coverage.withdraw", row)
    line = next((ln for ln in row.lines if ln.id == line_id), None)
    if line is None:
        raise NotFound(f"no coverage line {line_id} in agreement {agreement_id}")
    line.active = False
    await session.flush()
    await audit.record(
        session,
        caller.actor,
        "coverage.withdraw",
        resource_type="coverage_line",
        resource_id=line.id,
        details={"agreement": row.code},
    )
    return line


async def change_status(
    session: AsyncSession, caller: Caller, *, agreement_id: int, action: str, reason: str | None
) -> Agreement:
    row = await get_agreement(session, caller, agreement_id=agreement_id)
    _require_manager(caller, [p.institution_id for p in row.parties], f"agreement.{action}", row)
    sources, target = TRANSITIONS[action]
    current = AgreementStatus(row.status)
    if current not in sources:
        raise Conflict(
            f"agreement {row.code} is {current.value}: it cannot {action}",
            current_status=current.value,
        )
    row.status = target.value
    await session.flush()
    await audit.record(
        session,
        caller.actor,
        f"agreement.{action}",
        resource_type="agreement",
        resource_id=row.id,
        details={"code": row.code, "from": current.value, "to": target.value, "reason": reason},
    )
    return row


async def renew(
    session: AsyncSession, caller: Caller, *, agreement_id: int, data: s.AgreementRenew
) -> Agreement:
    source = await get_agreement(session, caller, agreement_id=agreement_id)
    _require_manager(caller, [p.institution_id for p in source.parties], "agreement.renew", source)
    if source.status in (AgreementStatus.DRAFT, AgreementStatus.TERMINATED):
        raise Conflict(f"agreement {source.code} is {source.status}: it cannot be renewed")
    live = [
        r
        for r in await repo.renewals_of(session, [source.id])
        if r.status != AgreementStatus.TERMINATED
    ]
    if live:
        raise Conflict(f"agreement {source.code} is already renewed by {live[0].code}")
    if data.valid_from <= source.valid_from:
        raise Unprocessable("a renewal starts after the agreement it renews")
    row = Agreement(
        code=data.code,
        title=data.title or source.title,
        kind=source.kind,
        status=data.status.value,
        valid_from=data.valid_from,
        valid_until=data.valid_until,
        timezone=source.timezone,
        renews_id=source.id,
        parties=[
            AgreementParty(institution_id=p.institution_id, role=p.role) for p in source.parties
        ],
        lines=[],
    )
    if data.copy_coverage:
        for line in source.lines:
            if line.active:
                row.lines.append(_copy_line(line))
    session.add(row)
    await _flush_unique(session, f"an agreement with code {data.code} exists already")
    await audit.record(
        session,
        caller.actor,
        "agreement.renew",
        resource_type="agreement",
        resource_id=row.id,
        details={"code": row.code, "renews": source.code},
    )
    return row


def _copy_line(line: CoverageLine) -> CoverageLine:
    return CoverageLine(
        service=line.service,
        specialties=list(line.specialties),
        requesters=list(line.requesters),
        providers=list(line.providers),
        quota=line.quota,
        period=line.period,
        response_hours=dict(line.response_hours),
        identification=line.identification,
        consent_required=line.consent_required,
        imaging=dict(line.imaging) if line.imaging else None,
        note=line.note,
        active=True,
    )


async def expire_lapsed(session: AsyncSession, *, at: datetime) -> list[Agreement]:
    """Mark active agreements whose last day has passed, in their own zone, expired."""
    lapsed = [
        row
        for row in await session.scalars(repo.agreements(visible_to=None, status="active"))
        if row.valid_until is not None and row.valid_until < local_date(at, row.timezone)
    ]
    for row in lapsed:
        row.status = AgreementStatus.EXPIRED.value
        await audit.record(
            session,
            audit.SYSTEM,
            "agreement.expire",
            resource_type="agreement",
            resource_id=row.id,
            details={
                "code": row.code,
                "valid_until": row.valid_until.isoformat() if row.valid_until else None,
            },
        )
    await session.flush()
    return lapsed


# Decisions ------------------------------------------------------------------------------


async def decide(
    session: AsyncSession,
    *,
    requester: int,
    provider: int,
    service: ServiceKind,
    specialty: str | None,
    at: datetime | None = None,
) -> Decision:
    """Load what `decide()` needs for this pair and ask it; usage is summed per period in SQL."""
    at = at or utcnow()
    agreements = await repo.agreements_between(session, requester, provider)
    domain = [a.to_domain() for a in agreements]
    usage = await _usage(session, domain, service, at)
    names = {
        i: row.code
        for i, row in (await repo.institutions_by_id(session, {requester, provider})).items()
    }
    return decide_rule(requester, provider, service, specialty, at, domain, usage, names)


@dataclass(frozen=True, slots=True)
class Partners:
    """What routing needs about a requester's partners, loaded once: decisions, kinds, institutions."""

    decisions: dict[int, Decision]
    agreement_kinds: dict[int, str]
    institutions: dict[int, Institution]


async def partners(
    session: AsyncSession,
    *,
    requester: int,
    service: ServiceKind,
    specialty: str | None,
    at: datetime | None = None,
) -> Partners:
    """`decide()` for every institution the requester has an agreement with, in three queries."""
    at = at or utcnow()
    rows = await repo.agreements_of(session, requester)
    domain = [a.to_domain() for a in rows]
    usage = await _usage(session, domain, service, at)
    providers = {
        p.institution_id
        for a in domain
        for p in a.parties
        if p.institution_id != requester and p.role.may_provide()
    }
    institutions = await repo.institutions_by_id(session, providers | {requester})
    names = {i: row.code for i, row in institutions.items()}
    by_provider: dict[int, list[DomainAgreement]] = {}
    for agreement in domain:
        for party in agreement.parties:
            by_provider.setdefault(party.institution_id, []).append(agreement)
    decisions = {
        provider: decide_rule(
            requester, provider, service, specialty, at, by_provider[provider], usage, names
        )
        for provider in sorted(providers)
    }
    return Partners(decisions, {a.id: a.kind for a in rows}, institutions)


async def decisions_for(
    session: AsyncSession,
    *,
    requester: int,
    service: ServiceKind,
    specialty: str | None,
    at: datetime | None = None,
) -> dict[int, Decision]:
    """`decide()` for every institution the requester has an agreement with, loaded once."""
    found = await partners(
        session, requester=requester, service=service, specialty=specialty, at=at
    )
    return found.decisions


async def _usage(
    session: AsyncSession, agreements: Sequence[DomainAgreement], service: ServiceKind, at: datetime
) -> list[UsageEntry]:
    """Held units of every quota line of `service`, each over its current period, in one query."""
    windows: dict[int, tuple[datetime, datetime | None]] = {}
    for agreement in agreements:
        for line in agreement.lines:
            if line.service is service and line.quota is not None:
                windows[line.id] = window(agreement, line.period, at)
    held = await repo.held_units_by_line(
        session, [(line, start, end) for line, (start, end) in windows.items()]
    )
    return [UsageEntry(line, windows[line][0], units) for line, units in held.items() if units]


def decision_read(
    decision: Decision,
    lang: str,
    *,
    requester: int,
    provider: int,
    service: ServiceKind,
    specialty: str | None,
    at: datetime,
) -> s.DecisionRead:
    terms = decision.data_terms
    return s.DecisionRead(
        allowed=decision.allowed,
        rule=decision.rule,
        requester_id=requester,
        provider_id=provider,
        service=service,
        specialty=specialty,
        at=at,
        agreement_id=decision.agreement_id,
        agreement_code=decision.agreement_code,
        line_id=decision.line_id,
        quota=decision.quota,
        used=decision.used,
        remaining=decision.remaining,
        period=decision.period,
        period_start=decision.period_start,
        period_end=decision.period_end,
        data_terms=s.DataTermsRead(
            identification=terms.identification, consent_required=terms.consent_required
        )
        if terms
        else None,
        response_hours={k.value: v for k, v in decision.response_hours.items()},
        reasons=[s.ReasonRead(rule=r.rule, text=r.text(lang)) for r in decision.reasons],
    )


# Permissions ----------------------------------------------------------------------------


def _require_operator_admin(caller: Caller, action: str) -> None:
    if not (caller.operator and caller.has(Role.ADMIN)):
        raise Forbidden(
            "only the platform operator's admins may do this",
            rule="operator_admin_required",
            refusal=audit.Refusal(caller.actor, action, rule="operator_admin_required"),
        )


def _require_manager(
    caller: Caller, party_ids: Sequence[int], action: str, row: Agreement | None = None
) -> None:
    """Agreements are managed by the coordinators and admins of their parties, or the operator."""
    if caller.operator and caller.has(Role.ADMIN):
        return
    if caller.has(Role.COORDINATOR, Role.ADMIN) and caller.institution_id in party_ids:
        return
    rule = "party_coordinator_required"
    raise Forbidden(
        "only coordinators or admins of a party institution may manage this agreement",
        rule=rule,
        refusal=audit.Refusal(
            caller.actor,
            action,
            rule=rule,
            resource_type="agreement",
            resource_id=row.id if row else None,
        ),
    )


async def _flush_unique(session: AsyncSession, message: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(message) from exc
