"""`/api/imaging/shares/{id}/report`: the radiologist's signed report on a shared study."""

from __future__ import annotations

from fastapi import APIRouter

from services.imaging.reports import service
from services.imaging.reports.schemas import ReportCreate, ReportRead
from shared.identity.deps import CurrentUser, Session

router = APIRouter(prefix="/api/imaging/shares", tags=["imaging reports"])


@router.post("/{share_id}/report", response_model=ReportRead, status_code=201)
async def sign_report(
    share_id: int, body: ReportCreate, session: Session, caller: CurrentUser
) -> ReportRead:
    """Write and sign the report on a share (a radiologist of the share's provider).

    201 with the report, which is then delivered into the referral's timeline; 403 for the
    origin and for other roles at the provider; 404 unless the caller's institution is the
    share's origin or provider; 409 when the share is revoked or blocked, or already reported.
    """
    report, share = await service.sign(session, caller, share_id=share_id, body=body)
    return ReportRead.of(report, share)


@router.get("/{share_id}/report", response_model=ReportRead)
async def get_report(share_id: int, session: Session, caller: CurrentUser) -> ReportRead:
    """The signed report on a share; 404 when there is none or the caller may not see the share."""
    report, share = await service.get_report(session, caller, share_id=share_id)
    return ReportRead.of(report, share)
