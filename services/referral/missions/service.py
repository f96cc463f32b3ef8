"""Visiting missions: publishing them, booking referrals onto their patient lists, cancelling.

A mission is a provider's team visiting a host hospital under an agreement's
visiting_mission coverage line. Publishing one asks `decide()` (host as
requester, provider as provider) and takes a unit of that line in the usage
ledger, consumed as an agreed piece of work; cancelling gives it back. Its
patient list is the referrals booked onto it by the referral workflow
(`book()`), whose row lock on the mission makes the capacity exact.

A mission is visible to its provider and its host only; anyone else gets 404.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral import privacy
from services.referral.missions import schemas as s
from services.referral.missions.models import Mission
from services.referral.referrals import views
from services.referral.referrals.models import Referral, ReferralEvent
from services.referral.referrals.schemas import InstitutionRef, PatientRead
from services.referral.workflow import Status
from shared import audit
from shared.entitlements.decide import Decision
from shared.entitlements.model import Identification, ServiceKind, UsageState
from shared.identity.deps import Caller
from shared.identity.models import Role, User
from shared.notifications import service as notifications
from shared.pagination import PageParams, Pagination, paginate
from shared.problems import Conflict, EntitlementRefused, Forbidden, NotFound, Unprocessable
from shared.registry import ledger
from shared.registry import repository as registry_repo
from shared.registry import service as registry
from shared.registry.models import Agreement, Institution

RESOURCE = "mission"
BOOKED = (Status.SCHEDULED.value, Status.COMPLETED.value, Status.CLOSED.value)


# Queries ------------------------------------------------------------------------------


def visible(institution_id: int) -> Select[Mission]:
    """Missions the institution sends a team on or hosts."""
    return select(Mission).where(
        or_(Mission.provider_id == institution_id, Mission.host_id == institution_id)
    )


async def booked(session: AsyncSession, mission_id: int) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Referral)
        .where(Referral.mission_id == mission_id, Referral.status.in_(BOOKED))
    )
    return int(count or 0)


async def booked_counts(session: AsyncSession, mission_ids: Iterable[int]) -> dict[int, int]:
    ids = list(mission_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Referral.mission_id, func.count())
        .where(Referral.mission_id.in_(ids), Referral.status.in_(BOOKED))
        .group_by(Referral.mission_id)
    )
    return {int(m): int(n) for m, n in rows.all() if m is not None}


async def patients(
    session: AsyncSession, mission_id: int, *, status: Sequence[str] = BOOKED
) -> list[Referral]:
    """The referrals on a mission's patient list, in the order they will be seen."""
    rows = await session.scalars(
        select(Referral)
        .where(Referral.mission_id == mission_id, Referral.status.in_(status))
        .order_by(Referral.scheduled_for, Referral.id)
    )
    return list(rows)


async def _lock_scheduled(session: AsyncSession, mission_id: int) -> None:
    """Lock the referrals still scheduled onto a mission, in id order (PostgreSQL)."""
    await session.execute(
        select(Referral.id)
        .where(Referral.mission_id == mission_id, Referral.status == Status.SCHEDULED.value)
        .order_by(Referral.id)
        .with_for_update(of=Referral)
    )


async def _lock(session: AsyncSession, mission_id: int) -> Mission | None:
    row: Mission | None = await session.scalar(
        select(Mission)
        .where(Mission.id == mission_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return row


async def _agreement_codes(session: AsyncSession, ids: Iterable[int]) -> dict[int, str]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = await session.execute(
        select(Agreement.id, Agreement.code).where(Agreement.id.in_(wanted))
    )
    return {int(i): str(c) for i, c in rows.all()}


# Reading ------------------------------------------------------------------------------


async def get(
    session: AsyncSession, caller: Caller, mission_id: int, *, action: str = "mission.read"
) -> Mission:
    """The mission if the caller's institution is its provider or host; else 404, audited."""
    row: Mission | None = await session.scalar(
        visible(caller.institution_id).where(Mission.id == mission_id)
    )
    if row is None:
        raise NotFound(
            f"no mission {mission_id}",
            refusal=audit.Refusal(
                caller.actor,
                action,
                rule="not_visible",
                resource_type=RESOURCE,
                resource_id=mission_id,
            ),
        )
    return row


async def list_missions(
    session: AsyncSession,
    caller: Caller,
    *,
    paging: PageParams,
    when: str | None = None,
    status: s.MissionStatus | None = None,
    today: date,
) -> tuple[list[Mission], Pagination]:
    """Upcoming missions (not yet over) soonest first; past ones, or all, latest first."""
    query = visible(caller.institution_id)
    if status is not None:
        query = query.where(Mission.status == status.value)
    if when == "upcoming":
        query = query.where(Mission.ends_on >= today).order_by(Mission.starts_on, Mission.id)
    elif when == "past":
        query = query.where(Mission.ends_on < today)
    if when != "upcoming":
        query = query.order_by(Mission.starts_on.desc(), Mission.id.desc())
    return await paginate(session, query, paging)


async def local_today(session: AsyncSession, caller: Caller, now: datetime) -> date:
    """Today where the caller works: a mission is upcoming until its last day there is over."""
    institution = await session.get(Institution, caller.institution_id)
    return now.astimezone(ZoneInfo(institution.timezone if institution else "UTC")).date()


# Publishing and cancelling ------------------------------------------------------------


def _require_coordinator(
    caller: Caller,
    *,
    provider_id: int,
    host_id: int,
    action: str,
    mission_id: int | None = None,
) -> None:
    """Missions are managed by coordinators of the provider or of the host."""
    if not caller.has(Role.COORDINATOR):
        rule, detail = "role_required", "managing missions needs the coordinator role"
    elif caller.institution_id not in (provider_id, host_id):
        rule = "mission_party_required"
        detail = "only coordinators of the provider or of the host manage this mission"
    else:
        return
    raise Forbidden(
        detail,
        rule=rule,
        refusal=audit.Refusal(
            caller.actor,
            action,
            rule=rule,
            resource_type=RESOURCE,
            resource_id=mission_id,
        ),
    )


async def create(
    session: AsyncSession, caller: Caller, *, data: s.MissionCreate, now: datetime
) -> Mission:
    """Publish a mission under the agreement whose visiting_mission line allows it (audited)."""
    _require_coordinator(
        caller, provider_id=data.provider_id, host_id=data.host_id, action="mission.create"
    )
    found = await registry_repo.institutions_by_id(session, {data.provider_id, data.host_id})
    missing = sorted({data.provider_id, data.host_id} - set(found))
    if missing:
        raise Unprocessable(f"unknown institutions: {missing}")
    counterpart = data.host_id if caller.institution_id == data.provider_id else data.provider_id
    decisions: list[Decision] = []
    wanted: list[str | None] = [*data.specialties] or [None]
    for specialty in wanted:
        decision = await registry.decide(
            session,
            requester=data.host_id,
            provider=data.provider_id,
            service=ServiceKind.VISITING_MISSION,
            specialty=specialty,
            at=now,
        )
        if not decision.allowed:
            reasons = decision.explain(caller.lang)
            raise EntitlementRefused(
                reasons[0] if reasons else decision.rule,
                rule=decision.rule,
                reasons=reasons,
                refusal=audit.Refusal(
                    caller.actor,
                    "mission.create",
                    rule=decision.rule,
                    resource_type=RESOURCE,
                    counterpart_id=counterpart,
                    reasons=reasons,
                ),
            )
        decisions.append(decision)
    chosen = decisions[0]
    if any(d.agreement_id != chosen.agreement_id for d in decisions):
        raise Unprocessable("these specialties fall under different agreements: publish one each")
    if data.agreement_id is not None and data.agreement_id != chosen.agreement_id:
        raise Unprocessable(
            f"agreement {data.agreement_id} does not cover this mission; "
            f"{chosen.agreement_code} does"
        )
    agreement = await session.get(Agreement, chosen.agreement_id)
    if agreement is None:  # the decision just found it; only a concurrent removal could do this
        raise Conflict("the agreement changed; try again")
    if agreement.valid_until is not None and data.ends_on > agreement.valid_until:
        raise Unprocessable(
            f"the mission ends after agreement {agreement.code} does "
            f"({agreement.valid_until.isoformat()})"
        )
    mission = Mission(
        agreement_id=agreement.id,
        provider_id=data.provider_id,
        host_id=data.host_id,
        title=data.title,
        starts_on=data.starts_on,
        ends_on=data.ends_on,
        specialties=list(data.specialties),
        capacity=data.capacity,
        team=data.team,
        status=s.MissionStatus.PLANNED.value,
        created_by_id=caller.user_id,
        created_at=now,
    )
    session.add(mission)
    await session.flush()
    # The line's unit is taken under its row lock, so a quota of missions holds under races too.
    await ledger.hold(
        session,
        caller.actor,
        requester=data.host_id,
        provider=data.provider_id,
        service=ServiceKind.VISITING_MISSION,
        specialty=data.specialties[0] if data.specialties else None,
        resource_type=RESOURCE,
        resource_id=str(mission.id),
        state=UsageState.CONSUMED,
        at=now,
        lang=caller.lang,
    )
    await audit.record(
        session,
        caller.actor,
        "mission.create",
        resource_type=RESOURCE,
        resource_id=mission.id,
        counterpart_id=counterpart,
        details={
            "agreement": agreement.code,
            "starts_on": data.starts_on.isoformat(),
            "ends_on": data.ends_on.isoformat(),
            "capacity": data.capacity,
            "specialties": list(data.specialties),
        },
    )
    return mission


async def cancel(
    session: AsyncSession, caller: Caller, *, mission_id: int, reason: str, now: datetime
) -> tuple[Mission, list[Referral]]:
    """Cancel a planned mission; answers with the referrals that must be rescheduled.

    Booked referrals keep their place on the list (so both sides see who was
    booked) and stay scheduled until the provider reschedules them.
    """
    mission = await get(session, caller, mission_id, action="mission.cancel")
    _require_coordinator(
        caller,
        provider_id=mission.provider_id,
        host_id=mission.host_id,
        action="mission.cancel",
        mission_id=mission.id,
    )
    # Lock in the order a booking does (its referral, then the mission): no deadlock with it.
    await _lock_scheduled(session, mission.id)
    locked = await _lock(session, mission.id)
    if locked is None:  # missions are never deleted
        raise NotFound(f"no mission {mission_id}")
    mission = locked
    if mission.status != s.MissionStatus.PLANNED.value:
        raise Conflict(
            f"mission {mission.id} is {mission.status}",
            rule="mission_not_planned",
            status_now=mission.status,
        )
    mission.status = s.MissionStatus.CANCELLED.value
    waiting = await patients(session, mission.id, status=(Status.SCHEDULED.value,))
    for referral in waiting:
        session.add(
            ReferralEvent(
                referral_id=referral.id,
                at=now,
                kind="mission_cancelled",
                actor_id=caller.user_id,
                actor_name=caller.display_name,
                institution_id=caller.institution_id,
                data={"mission_id": mission.id, "reason": reason},
            )
        )
    held = [
        u
        for u in await registry_repo.usage_for(session, RESOURCE, str(mission.id))
        if u.state != UsageState.RELEASED.value
    ]
    if held:
        await ledger.release(
            session, caller.actor, resource_type=RESOURCE, resource_id=str(mission.id)
        )
    await _tell_cancelled(session, mission, waiting, reason)
    await audit.record(
        session,
        caller.actor,
        "mission.cancel",
        resource_type=RESOURCE,
        resource_id=mission.id,
        counterpart_id=(
            mission.host_id if caller.institution_id == mission.provider_id else mission.provider_id
        ),
        details={"reason": reason, "to_reschedule": [r.id for r in waiting]},
    )
    await session.flush()
    return mission, waiting


async def _tell_cancelled(
    session: AsyncSession, mission: Mission, waiting: Sequence[Referral], reason: str
) -> None:
    """Both sides' coordinators and the specialists who booked patients onto it."""
    recipients: list[User] = []
    for institution in (mission.provider_id, mission.host_id):
        recipients += await notifications.staff(session, institution, (Role.COORDINATOR,))
    for specialist_id in sorted({r.specialist_id for r in waiting if r.specialist_id}):
        specialist = await session.get(User, specialist_id)
        recipients += [specialist] if specialist else []
    await notifications.notify(
        session,
        recipients,
        "mission_cancelled",
        resource_type=RESOURCE,
        resource_id=mission.id,
        params={
            "mission": mission.id,
            "title": mission.title,
            "reason": reason,
            "count": len(waiting),
        },
    )


# Booking (called by the referral workflow) --------------------------------------------


async def book(
    session: AsyncSession, caller: Caller, *, referral: Referral, mission_id: int
) -> Mission:
    """Put a referral on a mission's patient list; the mission's row lock makes capacity exact."""
    mission = await session.scalar(
        select(Mission).where(Mission.id == mission_id).with_for_update()
    )
    if mission is None or caller.institution_id not in (mission.provider_id, mission.host_id):
        raise NotFound(f"no mission {mission_id}")
    if mission.provider_id != referral.provider_id or mission.host_id != referral.origin_id:
        raise Unprocessable("this mission is not the provider's visit to the referring hospital")
    if mission.status != "planned":
        raise Conflict(f"mission {mission.id} is {mission.status}", rule="mission_not_planned")
    if mission.specialties and referral.specialty not in mission.specialties:
        raise Unprocessable(f"mission {mission.id} does not cover {referral.specialty}")
    taken = await booked(session, mission.id)
    if referral.mission_id == mission.id and referral.status in BOOKED:
        return mission
    if taken >= mission.capacity:
        raise Conflict(
            f"mission {mission.id} is full ({mission.capacity} patients)",
            rule="mission_full",
            refusal=audit.Refusal(
                caller.actor,
                "mission.book",
                rule="mission_full",
                resource_type="mission",
                resource_id=mission.id,
            ),
        )
    return mission


def starts_at(mission: Mission, host_timezone: str = "UTC") -> datetime:
    return datetime.combine(mission.starts_on, time(8, 0), tzinfo=ZoneInfo(host_timezone))


async def host_timezone(session: AsyncSession, mission: Mission) -> str:
    host = await session.get(Institution, mission.host_id)
    return host.timezone if host else "UTC"


# Views --------------------------------------------------------------------------------


def _side(caller: Caller, mission: Mission) -> str:
    return "provider" if caller.institution_id == mission.provider_id else "host"


async def summaries(
    session: AsyncSession, caller: Caller, rows: Sequence[Mission]
) -> list[s.MissionSummary]:
    counts = await booked_counts(session, (m.id for m in rows))
    names = await registry_repo.institutions_by_id(
        session, {i for m in rows for i in (m.provider_id, m.host_id)}
    )
    codes = await _agreement_codes(session, (m.agreement_id for m in rows))

    def ref(institution_id: int) -> InstitutionRef:
        row = names[institution_id]
        return InstitutionRef(id=row.id, code=row.code, name=row.name(caller.lang))

    return [
        s.MissionSummary(
            id=m.id,
            agreement_id=m.agreement_id,
            agreement_code=codes.get(m.agreement_id, "-"),
            provider=ref(m.provider_id),
            host=ref(m.host_id),
            title=m.title,
            starts_on=m.starts_on,
            ends_on=m.ends_on,
            specialties=list(m.specialties or []),
            capacity=m.capacity,
            booked=counts.get(m.id, 0),
            remaining=max(m.capacity - counts.get(m.id, 0), 0),
            team=m.team,
            status=s.MissionStatus(m.status),
            side=_side(caller, m),
            created_at=m.created_at,
        )
        for m in rows
    ]


async def read(
    session: AsyncSession, caller: Caller, mission: Mission, *, secret: bytes, now: datetime
) -> s.MissionRead:
    """The mission with its patient list; the provider's read of patients is audited."""
    (summary,) = await summaries(session, caller, [mission])
    listed: list[s.MissionPatient] = []
    seen: Counter[str] = Counter()
    for referral in await patients(session, mission.id):
        identification = await views.identification_for(session, caller, referral)
        seen[identification.value] += 1
        listed.append(_patient(referral, identification, secret=secret, today=now.date()))
    if listed and caller.institution_id != mission.host_id:
        await audit.record(
            session,
            caller.actor,
            "mission.read",
            resource_type=RESOURCE,
            resource_id=mission.id,
            counterpart_id=mission.host_id,
            outcome="allowed",
            details={"referrals": [p.referral_id for p in listed], "identification": dict(seen)},
        )
    outcomes = Counter(p.outcome.value if p.outcome else p.status.value for p in listed)
    return s.MissionRead(**summary.model_dump(), patients=listed, outcomes=dict(outcomes))


def _patient(
    referral: Referral, identification: Identification, *, secret: bytes, today: date
) -> s.MissionPatient:
    patient = referral.patient
    view = privacy.view(
        identification=identification,
        secret=secret,
        agreement_id=referral.agreement_id,
        patient_id=patient.id,
        local_id=patient.local_id,
        name=patient.name,
        sex=patient.sex,
        birth_date=patient.birth_date,
        today=today,
    )
    return s.MissionPatient(
        referral_id=referral.id,
        status=Status(referral.status),
        specialty=referral.specialty,
        urgency=referral.urgency,
        outcome=referral.outcome,
        scheduled_for=referral.scheduled_for,
        patient=PatientRead(
            identification=view.identification,
            pseudonym=view.pseudonym,
            local_id=view.local_id,
            name=view.name,
            sex=view.sex,
            birth_date=view.birth_date,
            birth_year=view.birth_year,
            age_band=view.age_band,
        ),
    )
