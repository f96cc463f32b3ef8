"""Referrals as each side may see them: the origin sees its patient, a partner sees what the terms allow."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.referral import privacy
from services.referral.referrals import repository as repo
from services.referral.referrals import schemas as s
from services.referral.referrals import service
from services.referral.referrals.models import Referral, ReferralEvent
from services.referral.workflow import Side
from shared import audit, messages
from shared.entitlements.model import Identification
from shared.identity.deps import Caller
from shared.platform import Platform
from shared.registry import repository as registry_repo
from shared.registry.models import CoverageLine


async def identification_for(
    session: AsyncSession, caller: Caller, referral: Referral
) -> Identification:
    """The data terms of the line under which the caller's institution was offered the referral."""
    if caller.institution_id == referral.origin_id:
        return Identification.IDENTIFIED
    line_id = referral.line_id if caller.institution_id == referral.provider_id else None
    if line_id is None:
        offers = [
            o
            for o in await repo.offers(session, referral.id)
            if o.provider_id == caller.institution_id
        ]
        line_id = offers[-1].line_id if offers else None
    line = await session.get(CoverageLine, line_id) if line_id else None
    return Identification(line.identification) if line else Identification.ANONYMISED


async def read(
    session: AsyncSession, platform: Platform, caller: Caller, referral: Referral, *, now: datetime
) -> s.ReferralRead:
    """The referral for this caller; a partner's read is audited as data crossing the border."""
    identification = await identification_for(session, caller, referral)
    patient = referral.patient
    view = privacy.view(
        identification=identification,
        secret=platform.settings.pseudonym_secret.encode(),
        agreement_id=referral.agreement_id,
        patient_id=patient.id,
        local_id=patient.local_id,
        name=patient.name,
        sex=patient.sex,
        birth_date=patient.birth_date,
        today=now.date(),
    )
    side = service.side_of(caller, referral)
    if side is not Side.ORIGIN:
        await audit.record(
            session,
            caller.actor,
            "referral.read",
            resource_type=service.RESOURCE,
            resource_id=referral.id,
            counterpart_id=referral.origin_id,
            outcome="allowed",
            details={"identification": identification.value},
        )
    names = await registry_repo.institutions_by_id(
        session, {i for i in (referral.origin_id, referral.provider_id) if i is not None}
    )

    def ref(institution_id: int | None) -> s.InstitutionRef | None:
        if institution_id is None:
            return None
        row = names[institution_id]
        return s.InstitutionRef(id=row.id, code=row.code, name=row.name(caller.lang))

    origin = ref(referral.origin_id)
    assert origin is not None
    return s.ReferralRead(
        id=referral.id,
        status=referral.status,
        side=side.value if side else "observer",
        origin=origin,
        provider=ref(referral.provider_id),
        patient=s.PatientRead(
            identification=view.identification,
            pseudonym=view.pseudonym,
            local_id=view.local_id,
            name=view.name,
            sex=view.sex,
            birth_date=view.birth_date,
            birth_year=view.birth_year,
            age_band=view.age_band,
        ),
        question=referral.question,
        summary=referral.summary,
        specialty=referral.specialty,
        urgency=referral.urgency,
        service=referral.service,
        languages=referral.languages,
        study_uids=referral.study_uids,
        agreement_id=referral.agreement_id,
        line_id=referral.line_id,
        specialist_id=referral.specialist_id,
        routing=[
            {**item, "reasons": messages.render(item.get("reasons", []), caller.lang)}
            for item in referral.routing
        ],
        offered_at=referral.offered_at,
        due_at=referral.due_at,
        schedule=s.ScheduleRead(
            kind=referral.schedule_kind,
            at=referral.scheduled_for,
            note=referral.schedule_note,
            mission_id=referral.mission_id,
        )
        if referral.schedule_kind
        else None,
        report=report_of(referral),
        actions=service.allowed_actions(caller, referral),
        created_at=referral.created_at,
        updated_at=referral.updated_at,
    )


def report_of(referral: Referral) -> s.ReportRead | None:
    if referral.reported_at is None:
        return None
    return s.ReportRead(
        findings=referral.report_findings or "",
        recommendations=referral.report_recommendations or "",
        author_id=referral.reported_by_id,
        reported_at=referral.reported_at,
        outcome=referral.outcome,
        outcome_note=referral.outcome_note,
        closed_at=referral.closed_at,
    )


def summary(
    caller: Caller,
    referral: Referral,
    codes: dict[int, str],
    *,
    now: datetime,
    identification: Identification,
) -> s.ReferralSummary:
    patient = referral.patient
    if identification is Identification.IDENTIFIED:
        label = f"{patient.name} ({patient.local_id})"
    else:
        label = f"{patient.sex}, {privacy.age_band(patient.birth_date, now.date())}"
    side = service.side_of(caller, referral)
    return s.ReferralSummary(
        id=referral.id,
        status=referral.status,
        side=side.value if side else "observer",
        origin_code=codes.get(referral.origin_id, "-"),
        provider_code=codes.get(referral.provider_id) if referral.provider_id else None,
        patient_label=label,
        specialty=referral.specialty,
        urgency=referral.urgency,
        service=referral.service,
        question=referral.question,
        waiting_since=referral.offered_at or referral.created_at,
        due_at=referral.due_at,
        overdue=bool(referral.due_at and referral.due_at < now and referral.status == "offered"),
    )


def event_read(event: ReferralEvent, lang: str) -> s.EventRead:
    """A timeline entry; any stored messages in it are rendered in the reader's language."""
    data = dict(event.data)
    if "reasons" in data:
        data["reasons"] = messages.render(data["reasons"], lang)
    return s.EventRead(
        id=event.id,
        at=event.at,
        kind=event.kind,
        actor_name=event.actor_name,
        institution_id=event.institution_id,
        data=data,
    )
