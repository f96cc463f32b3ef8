"""HTTP routes of the agreement registry and of entitlement decisions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime

from shared.db import utcnow
from shared.entitlements import vocab
from shared.entitlements.model import AgreementStatus, ServiceKind
from shared.identity.deps import CurrentUser, Session
from shared.pagination import Page, Paging
from shared.problems import Forbidden, Unprocessable
from shared.registry import schemas as s
from shared.registry import service

router = APIRouter(tags=["agreements"])
StatusAction = Literal["activate", "suspend", "terminate"]


@router.get("/api/institutions", response_model=Page[s.InstitutionRead])
async def list_institutions(
    session: Session, caller: CurrentUser, paging: Paging
) -> Page[s.InstitutionRead]:
    """The directory of institutions on the platform, in code order."""
    rows, pagination = await service.list_institutions(session, caller, paging=paging)
    return Page(
        items=[service.institution_read(r, caller.lang) for r in rows], pagination=pagination
    )


@router.post(
    "/api/institutions", response_model=s.InstitutionRead, status_code=status.HTTP_201_CREATED
)
async def create_institution(
    session: Session, caller: CurrentUser, data: s.InstitutionCreate
) -> s.InstitutionRead:
    """Register an institution (the platform operator's admins only)."""
    row = await service.create_institution(session, caller, data=data)
    return service.institution_read(row, caller.lang)


@router.get("/api/institutions/{key}", response_model=s.InstitutionRead)
async def get_institution(session: Session, caller: CurrentUser, key: str) -> s.InstitutionRead:
    """One institution, by id or by code."""
    row = await service.get_institution(session, caller, key=key)
    return service.institution_read(row, caller.lang)


@router.get("/api/agreements", response_model=Page[s.AgreementRead])
async def list_agreements(
    session: Session,
    caller: CurrentUser,
    paging: Paging,
    status_: Annotated[AgreementStatus | None, Query(alias="status")] = None,
    party: Annotated[
        int | None, Query(gt=0, description="only agreements naming this institution")
    ] = None,
) -> Page[s.AgreementRead]:
    """Agreements the caller's institution is a party to (every agreement for the operator)."""
    rows, pagination = await service.list_agreements(
        session, caller, paging=paging, status=status_, party=party
    )
    items = [await service.agreement_read(session, r, caller.lang) for r in rows]
    return Page(items=items, pagination=pagination)


@router.post("/api/agreements", response_model=s.AgreementRead, status_code=status.HTTP_201_CREATED)
async def create_agreement(
    session: Session, caller: CurrentUser, data: s.AgreementCreate
) -> s.AgreementRead:
    """Record an agreement with its parties and, optionally, its coverage lines."""
    row = await service.create_agreement(session, caller, data=data)
    return await service.agreement_read(session, row, caller.lang)


@router.get("/api/agreements/{agreement_id}", response_model=s.AgreementRead)
async def get_agreement(
    session: Session, caller: CurrentUser, agreement_id: int
) -> s.AgreementRead:
    """One agreement with its parties, coverage lines and their use in the current period."""
    row = await service.get_agreement(session, caller, agreement_id=agreement_id)
    return await service.agreement_read(session, row, caller.lang)


@router.post(
    "/api/agreements/{agreement_id}/renew",
    response_model=s.AgreementRead,
    status_code=status.HTTP_201_CREATED,
)
async def renew_agreement(
    session: Session, caller: CurrentUser, agreement_id: int, data: s.AgreementRenew
) -> s.AgreementRead:
    """Create the agreement that renews this one, with the same parties and (by default) coverage."""
    row = await service.renew(session, caller, agreement_id=agreement_id, data=data)
    return await service.agreement_read(session, row, caller.lang)


@router.get("/api/agreements/{agreement_id}/coverage", response_model=list[s.CoverageLineRead])
async def list_coverage(
    session: Session, caller: CurrentUser, agreement_id: int
) -> list[s.CoverageLineRead]:
    """The agreement's coverage lines, with the units held in the current period."""
    row = await service.get_agreement(session, caller, agreement_id=agreement_id)
    return (await service.agreement_read(session, row, caller.lang)).coverage


@router.post(
    "/api/agreements/{agreement_id}/coverage",
    response_model=s.CoverageLineRead,
    status_code=status.HTTP_201_CREATED,
)
async def add_coverage(
    session: Session, caller: CurrentUser, agreement_id: int, data: s.CoverageLineCreate
) -> s.CoverageLineRead:
    """Add a coverage line: who may ask whom for what, how often, on which data terms."""
    line = await service.add_coverage_line(session, caller, agreement_id=agreement_id, data=data)
    return service._line_read(line, 0)


@router.delete(
    "/api/agreements/{agreement_id}/coverage/{line_id}", response_model=s.CoverageLineRead
)
async def withdraw_coverage(
    session: Session, caller: CurrentUser, agreement_id: int, line_id: int
) -> s.CoverageLineRead:
    """Withdraw a coverage line; its usage history is kept."""
    line = await service.withdraw_coverage_line(
        session, caller, agreement_id=agreement_id, line_id=line_id
    )
    return service._line_read(line)


# Declared after /renew and /coverage so that those paths are not taken for an action.
@router.post("/api/agreements/{agreement_id}/{action}", response_model=s.AgreementRead)
async def change_status(
    session: Session,
    caller: CurrentUser,
    agreement_id: int,
    action: StatusAction,
    data: s.StatusChange | None = None,
) -> s.AgreementRead:
    """Activate a draft (or resume a suspended agreement), suspend, or terminate."""
    row = await service.change_status(
        session,
        caller,
        agreement_id=agreement_id,
        action=action,
        reason=data.reason if data else None,
    )
    return await service.agreement_read(session, row, caller.lang)


@router.get("/api/entitlements/decide", response_model=s.DecisionRead, tags=["entitlements"])
async def decide(
    session: Session,
    caller: CurrentUser,
    provider: Annotated[
        str, Query(min_length=1, max_length=60, description="institution id or code")
    ],
    service_: Annotated[ServiceKind, Query(alias="service")],
    specialty: Annotated[str | None, Query(max_length=60)] = None,
    requester: Annotated[
        str | None,
        Query(max_length=60, description="operator only; defaults to the caller's institution"),
    ] = None,
    at: Annotated[AwareDatetime | None, Query(description="when; defaults to now")] = None,
) -> s.DecisionRead:
    """May the caller's institution ask `provider` for `service` in `specialty`? With the reasons."""
    requester_id = caller.institution_id
    if requester is not None:
        found = await service.get_institution(session, caller, key=requester)
        if found.id != caller.institution_id and not caller.operator:
            raise Forbidden(
                "only the platform operator may ask on behalf of another institution",
                rule="operator_required",
            )
        requester_id = found.id
    target = await service.get_institution(session, caller, key=provider)
    if specialty is not None and not vocab.is_specialty(specialty):
        raise Unprocessable(f"unknown specialty {specialty!r}; see /api/vocabulary")
    when = at or utcnow()
    decision = await service.decide(
        session,
        requester=requester_id,
        provider=target.id,
        service=service_,
        specialty=specialty,
        at=when,
    )
    return service.decision_read(
        decision,
        caller.lang,
        requester=requester_id,
        provider=target.id,
        service=service_,
        specialty=specialty,
        at=when,
    )


@router.get("/api/vocabulary", tags=["entitlements"])
async def vocabulary(caller: CurrentUser) -> dict[str, list[dict[str, str | None]]]:
    """Specialties and service kinds with labels in the caller's language and SNOMED CT codes."""

    def terms(table: dict[str, vocab.Term]) -> list[dict[str, str | None]]:
        return [
            {"code": t.code, "label": t.label(caller.lang), "snomed": t.snomed}
            for t in table.values()
        ]

    return {
        "specialties": terms(vocab.specialties()),
        "service_kinds": terms(vocab.service_kinds()),
    }
