"""The referral workflow over the database: submit, route, offer, act, read.

Every action locks the referral row, asks the pure state machine whether the
caller's side and roles may take it from the current status, moves the quota
through the usage ledger, writes the timeline and the audit in the same
transaction, and notifies the people concerned in their own language.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral import routing
from services.referral.referrals import repository as repo
from services.referral.referrals import schemas as s
from services.referral.referrals.models import Patient, Referral, ReferralEvent, ReferralOffer
from services.referral.workflow import Action, Side, Status, TransitionRefused, check
from shared import audit
from shared.entitlements.model import AgreementKind, ServiceKind, Urgency
from shared.i18n import translate
from shared.identity.deps import Caller
from shared.identity.models import Role, User
from shared.notifications import service as notifications
from shared.problems import Conflict, EntitlementRefused, Forbidden, NotFound
from shared.registry import ledger
from shared.registry import repository as registry_repo
from shared.registry import service as registry
from shared.registry.models import Agreement, Institution

RESOURCE = "referral"
HISTORY_WINDOW = timedelta(days=180)


# Reading ------------------------------------------------------------------------------


def side_of(caller: Caller, referral: Referral) -> Side | None:
    if caller.institution_id == referral.origin_id:
        return Side.ORIGIN
    if caller.institution_id == referral.provider_id:
        return Side.PROVIDER
    return None


async def get(
    session: AsyncSession, caller: Caller, referral_id: int, *, for_update: bool = False
) -> Referral:
    """The referral if the caller's institution sent it or was offered it; else 404, audited."""
    row = await repo.get(
        session, referral_id, institution_id=caller.institution_id, for_update=for_update
    )
    if row is None:
        raise NotFound(
            f"no referral {referral_id}",
            refusal=audit.Refusal(
                caller.actor,
                "referral.read",
                rule="not_visible",
                resource_type=RESOURCE,
                resource_id=referral_id,
            ),
        )
    return row


def allowed_actions(caller: Caller, referral: Referral) -> list[str]:
    side = side_of(caller, referral)
    if side is None:
        return []
    status = Status(referral.status)
    possible = []
    for action in (
        Action.ACCEPT,
        Action.DECLINE,
        Action.REQUEST_INFO,
        Action.PROVIDE_INFO,
        Action.SCHEDULE,
        Action.COMPLETE,
        Action.ACKNOWLEDGE,
        Action.CANCEL,
        Action.REROUTE,
    ):
        try:
            check(action, status, side=side, roles=caller.roles)
        except TransitionRefused:
            continue
        possible.append(action.value)
    return possible


# Submission and routing ---------------------------------------------------------------


async def submit(
    session: AsyncSession, caller: Caller, *, data: s.ReferralCreate, now: datetime
) -> Referral:
    """Record the case at the origin and, unless it is a draft, route it to the best provider."""
    if not caller.has(Role.REFERRING_PHYSICIAN, Role.COORDINATOR):
        rule = "role_required"
        raise Forbidden(
            "submitting a referral needs the referring_physician or coordinator role",
            rule=rule,
            refusal=audit.Refusal(caller.actor, "referral.submit", rule=rule),
        )
    patient = await repo.patient_by_local_id(session, caller.institution_id, data.patient.local_id)
    if patient is None:
        patient = Patient(institution_id=caller.institution_id, local_id=data.patient.local_id)
        session.add(patient)
    patient.name, patient.sex, patient.birth_date = (
        data.patient.name,
        data.patient.sex,
        data.patient.birth_date,
    )
    referral = Referral(
        origin_id=caller.institution_id,
        created_by_id=caller.user_id,
        patient=patient,
        question=data.question,
        summary=data.summary,
        specialty=data.specialty,
        urgency=data.urgency.value,
        service=data.service.value,
        languages=list(data.languages),
        study_uids=list(data.study_uids),
        status=Status.DRAFT.value,
        routing=[],
        tried=[],
        created_at=now,
        updated_at=now,
    )
    session.add(referral)
    await session.flush()
    await _event(session, referral, "created", caller, now)
    await audit.record(
        session,
        caller.actor,
        "referral.create",
        resource_type=RESOURCE,
        resource_id=referral.id,
        details={"draft": data.draft},
    )
    if not data.draft:
        await _submit_draft(session, caller, referral, now)
    return referral


async def submit_draft(
    session: AsyncSession, caller: Caller, *, referral_id: int, now: datetime
) -> Referral:
    referral = await get(session, caller, referral_id, for_update=True)
    await _submit_draft(session, caller, referral, now)
    return referral


async def _submit_draft(
    session: AsyncSession, caller: Caller, referral: Referral, now: datetime
) -> None:
    _transition(caller, referral, Action.SUBMIT)
    referral.status = Status.SUBMITTED.value
    await _event(session, referral, "submitted", caller, now)
    ranking = await rank(session, referral, now=now)
    chosen = routing.best(ranking)
    if chosen is None:
        reasons = [m.text(caller.lang) for r in ranking for m in r.reasons][:10]
        rule = "no_eligible_provider"
        raise EntitlementRefused(
            translate("referral.no_eligible_provider", caller.lang),
            rule=rule,
            reasons=reasons or [translate("referral.no_agreement_at_all", caller.lang)],
            refusal=audit.Refusal(caller.actor, "referral.submit", rule=rule, reasons=reasons),
        )
    await _offer(session, caller.actor, referral, chosen, ranking, now=now, by="routing")


async def rank(
    session: AsyncSession, referral: Referral, *, now: datetime, exclude: Sequence[int] = ()
) -> list[routing.Ranked]:
    """Every provider the origin has an agreement with, ranked for this referral."""
    service = ServiceKind(referral.service)
    found = await registry.partners(
        session, requester=referral.origin_id, service=service, specialty=referral.specialty, at=now
    )
    decisions, institutions, kinds = found.decisions, found.institutions, found.agreement_kinds
    queues = await repo.open_queues(session, decisions)
    speeds = await repo.median_response_hours(session, decisions, since=now - HISTORY_WINDOW)
    spoken = await repo.specialist_languages(session, decisions)
    candidates = [
        routing.Candidate(
            provider_id=provider,
            provider_code=institutions[provider].code,
            country=institutions[provider].country,
            decision=decision,
            twinning=kinds.get(decision.agreement_id or 0) == AgreementKind.TWINNING.value,
            open_queue=queues.get(provider, 0),
            median_response_hours=speeds.get(provider),
            languages=spoken.get(provider, frozenset()),
        )
        for provider, decision in decisions.items()
    ]
    request = routing.Request(
        requester_id=referral.origin_id,
        requester_country=institutions[referral.origin_id].country,
        urgency=Urgency(referral.urgency),
        languages=tuple(referral.languages),
        exclude=frozenset(exclude),
    )
    return routing.rank(request, candidates)


async def _offer(
    session: AsyncSession,
    actor: audit.Actor,
    referral: Referral,
    chosen: routing.Ranked,
    ranking: Sequence[routing.Ranked],
    *,
    now: datetime,
    by: str,
) -> None:
    """Reserve a unit of the chosen provider's line and hand the referral to that provider."""
    decision, _ = await ledger.hold(
        session,
        actor,
        requester=referral.origin_id,
        provider=chosen.provider_id,
        service=ServiceKind(referral.service),
        specialty=referral.specialty,
        resource_type=RESOURCE,
        resource_id=str(referral.id),
        at=now,
    )
    hours = decision.response_hours.get(Urgency(referral.urgency)) or 120
    referral.status = Status.OFFERED.value
    referral.provider_id, referral.agreement_id, referral.line_id = (
        chosen.provider_id,
        decision.agreement_id,
        decision.line_id,
    )
    referral.routing = [r.as_dict() for r in ranking]
    referral.tried = sorted({*referral.tried, chosen.provider_id})
    referral.offered_at, referral.due_at = now, now + timedelta(hours=hours)
    referral.paused_at = referral.escalated_at = None
    referral.specialist_id = None
    session.add(
        ReferralOffer(
            referral_id=referral.id,
            provider_id=chosen.provider_id,
            agreement_id=decision.agreement_id,
            line_id=decision.line_id,
            offered_at=now,
            outcome="pending",
        )
    )
    await _event(
        session,
        referral,
        "offered",
        None,
        now,
        provider=chosen.provider_code,
        score=round(chosen.score, 2),
        reasons=[m.as_dict() for m in chosen.reasons],
        by=by,
        due_at=referral.due_at.isoformat(),
    )
    names = await registry_repo.institutions_by_id(
        session, {referral.origin_id, chosen.provider_id}
    )
    recipients = await notifications.staff(
        session,
        chosen.provider_id,
        (Role.SPECIALIST, Role.RADIOLOGIST, Role.COORDINATOR),
        specialty=referral.specialty,
    )
    await notifications.notify(
        session,
        recipients,
        "referral_offered",
        resource_type=RESOURCE,
        resource_id=referral.id,
        params={
            "referral": referral.id,
            "origin": names[referral.origin_id].code,
            "provider": names[chosen.provider_id].code,
            "service": referral.service,
            "specialty": referral.specialty,
            "urgency": referral.urgency,
            "due": referral.due_at.strftime("%Y-%m-%d %H:%M UTC"),
        },
    )


async def _reroute(
    session: AsyncSession,
    actor: audit.Actor,
    referral: Referral,
    *,
    now: datetime,
    outcome: str,
    reason: str | None,
) -> routing.Ranked | None:
    """Close the current offer, give its unit back, and offer the next provider if there is one."""
    offer = await repo.current_offer(session, referral)
    if offer is not None:
        offer.outcome, offer.responded_at, offer.reason = outcome, now, reason
    await ledger.release(session, actor, resource_type=RESOURCE, resource_id=str(referral.id))
    ranking = await rank(session, referral, now=now, exclude=referral.tried)
    chosen = routing.best(ranking)
    if chosen is not None:
        await _offer(session, actor, referral, chosen, ranking, now=now, by=outcome)
    else:
        referral.routing = [r.as_dict() for r in ranking]
        referral.provider_id = referral.due_at = None
    return chosen


# Actions ------------------------------------------------------------------------------


async def act(
    session: AsyncSession,
    caller: Caller,
    *,
    referral_id: int,
    action: Action,
    body: Any,
    now: datetime,
) -> Referral:
    referral = await get(session, caller, referral_id, for_update=True)
    target = _transition(caller, referral, action)
    handler = _HANDLERS[action]
    await handler(session, caller, referral, body, now, target)
    referral.updated_at = now
    await audit.record(
        session,
        caller.actor,
        f"referral.{action.value}",
        resource_type=RESOURCE,
        resource_id=referral.id,
        counterpart_id=_counterpart(caller, referral),
        details={"status": referral.status},
    )
    return referral


def _transition(caller: Caller, referral: Referral, action: Action) -> Status:
    side = side_of(caller, referral)
    status = Status(referral.status)
    try:
        if side is None:
            raise TransitionRefused("not_holder", "your institution no longer holds this referral")
        return check(action, status, side=side, roles=caller.roles)
    except TransitionRefused as refused:
        cls = Conflict if refused.conflict else Forbidden
        refusal = audit.Refusal(
            caller.actor,
            f"referral.{action.value}",
            rule=refused.rule,
            resource_type=RESOURCE,
            resource_id=referral.id,
        )
        if cls is Conflict:
            raise Conflict(refused.detail, rule=refused.rule, status_now=status.value) from refused
        raise Forbidden(refused.detail, rule=refused.rule, refusal=refusal) from refused


def _counterpart(caller: Caller, referral: Referral) -> int | None:
    return (
        referral.provider_id if caller.institution_id == referral.origin_id else referral.origin_id
    )


async def _accept(
    session: AsyncSession,
    caller: Caller,
    referral: Referral,
    body: None,
    now: datetime,
    target: Status,
) -> None:
    await ledger.consume(
        session, caller.actor, resource_type=RESOURCE, resource_id=str(referral.id)
    )
    offer = await repo.current_offer(session, referral)
    if offer is not None:
        offer.outcome, offer.responded_at = "accepted", now
    referral.status, referral.specialist_id = target.value, caller.user_id
    await _event(session, referral, "accepted", caller, now)
    await _tell_origin(session, referral, "referral_accepted", {})


async def _decline(
    session: AsyncSession,
    caller: Caller,
    referral: Referral,
    body: s.DeclineBody,
    now: datetime,
    target: Status,
) -> None:
    provider_code = await _code(session, caller.institution_id)
    await _event(session, referral, "declined", caller, now, reason=body.reason)
    referral.status = target.value
    chosen = await _reroute(
        session, caller.actor, referral, now=now, outcome="declined", reason=body.reason
    )
    if chosen is None:
        referral.status = Status.DECLINED.value
    await _tell_origin(
        session,
        referral,
        "referral_declined",
        {
            "provider": provider_code,
            "reason": body.reason,
            "next": notifications.next_step(chosen.provider_code if chosen else None),
        },
    )


async def _request_info(
    session: AsyncSession,
    caller: Caller,
    referral: Referral,
    body: s.RequestInfoBody,
    now: datetime,
    target: Status,
) -> None:
    referral.status, referral.paused_at = target.value, now
    await _event(session, referral, "info_requested", caller, now, question=body.question)
    await _tell_origin(session, referral, "referral_info_requested", {"question": body.question})


async def _provide_info(
    session: AsyncSession,
    caller: Caller,
    referral: Referral,
    body: s.ProvideInfoBody,
    now: datetime,
    target: Status,
) -> None:
    paused = now - (referral.paused_at or now)
    offer = await repo.current_offer(session, referral)
    if offer is not None:
        offer.paused_s += int(paused.total_seconds())
    if referral.due_at is not None:
        referral.due_at += paused  # the clock stood still while the referrer owed information
    referral.status, referral.paused_at = target.value, None
    await _event(session, referral, "info_provided", caller, now, answer=body.answer)
    await _tell_provider(session, referral, "referral_info_provided", {})


async def _schedule(
    session: AsyncSession,
    caller: Caller,
    referral: Referral,
    body: s.ScheduleBody,
    now: datetime,
    target: Status,
) -> None:
    from services.referral.missions import service as missions

    if body.mission_id is not None:
        mission = await missions.book(
            session, caller, referral=referral, mission_id=body.mission_id
        )
        referral.mission_id, referral.scheduled_for = mission.id, missions.starts_at(mission)
    else:
        referral.mission_id, referral.scheduled_for = None, body.at
    referral.status, referral.schedule_kind, referral.schedule_note = (
        target.value,
        body.kind.value,
        body.note,
    )
    when = referral.scheduled_for.isoformat() if referral.scheduled_for else "-"
    await _event(
        session,
        referral,
        "scheduled",
        caller,
        now,
        kind=body.kind.value,
        at=when,
        mission_id=referral.mission_id,
        note=body.note,
    )
    await _tell_origin(
        session, referral, "referral_scheduled", {"kind": body.kind.value, "when": when}
    )


async def _complete(
    session: AsyncSession,
    caller: Caller,
    referral: Referral,
    body: s.ReportBody,
    now: datetime,
    target: Status,
) -> None:
    referral.status = target.value
    referral.report_findings, referral.report_recommendations = body.findings, body.recommendations
    referral.reported_by_id, referral.reported_at = caller.user_id, now
    await _event(session, referral, "completed", caller, now)
    await _tell_origin(session, referral, "referral_completed", {})


async def _acknowledge(
    session: AsyncSession,
    caller: Caller,
    referral: Referral,
    body: s.AcknowledgeBody,
    now: datetime,
    target: Status,
) -> None:
    referral.status, referral.outcome, referral.outcome_note = (
        target.value,
        body.outcome.value,
        body.note,
    )
    referral.closed_at = now
    await _event(session, referral, "closed", caller, now, outcome=body.outcome.value)
    await _tell_provider(session, referral, "referral_closed", {"outcome": body.outcome.value})


async def _cancel(
    session: AsyncSession,
    caller: Caller,
    referral: Referral,
    body: s.CancelBody,
    now: datetime,
    target: Status,
) -> None:
    held = Status(referral.status) not in (Status.DRAFT, Status.SUBMITTED)
    offer = await repo.current_offer(session, referral)
    if offer is not None:
        offer.outcome, offer.responded_at, offer.reason = "withdrawn", now, body.reason
    if held:
        await ledger.release(
            session, caller.actor, resource_type=RESOURCE, resource_id=str(referral.id)
        )
        await _tell_provider(session, referral, "referral_cancelled", {"reason": body.reason})
    referral.status = target.value
    await _event(session, referral, "cancelled", caller, now, reason=body.reason)


async def _reroute_by_coordinator(
    session: AsyncSession,
    caller: Caller,
    referral: Referral,
    body: s.RerouteBody,
    now: datetime,
    target: Status,
) -> None:
    """A coordinator of the origin sends the referral to another entitled provider (audited)."""
    ranking = await rank(session, referral, now=now)
    chosen = next((r for r in ranking if r.provider_id == body.provider_id), None)
    if chosen is None or not chosen.eligible:
        rule = chosen.rule if chosen else "no_agreement"
        reasons = (
            [m.text(caller.lang) for m in chosen.reasons]
            if chosen
            else [translate("referral.no_agreement_with_provider", caller.lang)]
        )
        raise EntitlementRefused(
            reasons[0],
            rule=rule,
            reasons=reasons,
            refusal=audit.Refusal(
                caller.actor,
                "referral.reroute",
                rule=rule,
                resource_type=RESOURCE,
                resource_id=referral.id,
                counterpart_id=body.provider_id,
                reasons=reasons,
            ),
        )
    if referral.provider_id == chosen.provider_id and referral.status == Status.OFFERED.value:
        raise Conflict("the referral is already offered to that provider")
    offer = await repo.current_offer(session, referral)
    if offer is not None:
        offer.outcome, offer.responded_at, offer.reason = "withdrawn", now, body.reason
    await ledger.release(
        session, caller.actor, resource_type=RESOURCE, resource_id=str(referral.id)
    )
    await _offer(session, caller.actor, referral, chosen, ranking, now=now, by="coordinator")
    await _event(
        session,
        referral,
        "rerouted",
        caller,
        now,
        provider=chosen.provider_code,
        reason=body.reason,
    )


_HANDLERS: dict[Action, Any] = {
    Action.ACCEPT: _accept,
    Action.DECLINE: _decline,
    Action.REQUEST_INFO: _request_info,
    Action.PROVIDE_INFO: _provide_info,
    Action.SCHEDULE: _schedule,
    Action.COMPLETE: _complete,
    Action.ACKNOWLEDGE: _acknowledge,
    Action.CANCEL: _cancel,
    Action.REROUTE: _reroute_by_coordinator,
}


# Escalation ---------------------------------------------------------------------------


async def escalate(session: AsyncSession, referral_id: int, *, now: datetime) -> str | None:
    """Re-offer one overdue referral and tell both coordinators, once; None if nothing was due."""
    referral = await session.scalar(
        select(Referral).where(Referral.id == referral_id).with_for_update(of=Referral)
    )
    if (
        referral is None
        or referral.status != Status.OFFERED.value
        or referral.due_at is None
        or referral.due_at >= now
        or referral.escalated_at is not None
    ):
        return None
    late_provider = referral.provider_id
    hours = round(
        (referral.due_at - (referral.offered_at or referral.due_at)).total_seconds() / 3600
    )
    referral.escalated_at = now
    await _event(
        session,
        referral,
        "escalated",
        None,
        now,
        provider=await _code(session, late_provider),
        hours=hours,
    )
    chosen = await _reroute(
        session,
        audit.SYSTEM,
        referral,
        now=now,
        outcome="expired",
        reason="no answer within the response time",
    )
    if chosen is None:
        referral.status = Status.EXPIRED.value
        await _event(session, referral, "expired", None, now)
    coordinators = []
    for institution in (referral.origin_id, late_provider):
        if institution is not None:
            coordinators += await notifications.staff(session, institution, (Role.COORDINATOR,))
    await notifications.notify(
        session,
        coordinators,
        "referral_overdue",
        resource_type=RESOURCE,
        resource_id=referral.id,
        params={
            "referral": referral.id,
            "provider": await _code(session, late_provider),
            "hours": hours,
            "next": notifications.next_step(chosen.provider_code if chosen else None),
        },
    )
    await audit.record(
        session,
        audit.SYSTEM,
        "referral.escalate",
        resource_type=RESOURCE,
        resource_id=referral.id,
        counterpart_id=late_provider,
        details={"next": chosen.provider_code if chosen else None},
    )
    return chosen.provider_code if chosen else Status.EXPIRED.value


# Helpers ------------------------------------------------------------------------------


async def _event(
    session: AsyncSession,
    referral: Referral,
    event_kind: str,
    caller: Caller | None,
    now: datetime,
    **data: Any,
) -> None:
    session.add(
        ReferralEvent(
            referral_id=referral.id,
            at=now,
            kind=event_kind,
            actor_id=caller.user_id if caller else None,
            actor_name=caller.display_name if caller else None,
            institution_id=caller.institution_id if caller else None,
            data=data,
        )
    )
    await session.flush()


async def _code(session: AsyncSession, institution_id: int | None) -> str:
    row = await session.get(Institution, institution_id) if institution_id else None
    return row.code if row else "-"


async def _tell_origin(
    session: AsyncSession, referral: Referral, kind: str, params: dict[str, Any]
) -> None:
    """The referral's author and the origin's coordinators."""
    author = await session.get(User, referral.created_by_id)
    coordinators = await notifications.staff(session, referral.origin_id, (Role.COORDINATOR,))
    await _tell(session, referral, [author, *coordinators], kind, params)


async def _tell_provider(
    session: AsyncSession, referral: Referral, kind: str, params: dict[str, Any]
) -> None:
    """The specialist who took the referral and the provider's coordinators."""
    if referral.provider_id is None:
        return
    specialist = await session.get(User, referral.specialist_id) if referral.specialist_id else None
    coordinators = await notifications.staff(session, referral.provider_id, (Role.COORDINATOR,))
    await _tell(session, referral, [specialist, *coordinators], kind, params)


async def _tell(
    session: AsyncSession,
    referral: Referral,
    users: list[User | None],
    kind: str,
    params: dict[str, Any],
) -> None:
    base = {
        "referral": referral.id,
        "origin": await _code(session, referral.origin_id),
        "provider": await _code(session, referral.provider_id),
    }
    await notifications.notify(
        session,
        [u for u in users if u is not None],
        kind,
        params={**base, **params},
        resource_type=RESOURCE,
        resource_id=referral.id,
    )


async def agreement_of(session: AsyncSession, referral: Referral) -> Agreement | None:
    return await session.get(Agreement, referral.agreement_id) if referral.agreement_id else None
