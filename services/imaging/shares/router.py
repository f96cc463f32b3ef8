"""`/api/imaging/shares`: share a study with a referral's provider, list, read, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.imaging.shares import service
from services.imaging.shares.models import ShareStatus
from services.imaging.shares.schemas import ShareCreate, ShareRead
from shared.identity.deps import CurrentUser, PlatformDep, Session
from shared.pagination import Page, Paging
from shared.problems import problem_response

router = APIRouter(prefix="/api/imaging/shares", tags=["imaging shares"])

_BLOCKED_DETAIL = {
    "leak_detected": "an outgoing instance still carried an identifier of the original study",
    "burned_in": "an image may show identifying text burned into its pixels",
    "deid_failed": "an instance could not be de-identified",
}


@router.post("", response_model=ShareRead, status_code=201)
async def create_share(
    body: ShareCreate,
    request: Request,
    response: Response,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
) -> ShareRead | JSONResponse:
    """Share a study with the provider of a referral, de-identified under the agreement's terms.

    201 with the new share; 200 with the existing one when the study is already shared for
    this referral; 403 when the agreement refuses (with the rule); 404 for a referral or
    study the caller's institution does not hold; 422 `share-blocked` when the leak gate or
    burned-in annotation stopped it: nothing left the origin, and the block is audited.
    """
    outcome = await service.share(session, caller, platform=platform, body=body)
    row = outcome.share
    if row.status == ShareStatus.BLOCKED.value:
        rule = row.blocked_reason or "deid_failed"
        return problem_response(
            request,
            422,
            "share_blocked",
            _BLOCKED_DETAIL.get(rule, _BLOCKED_DETAIL["deid_failed"]),
            rule=rule,
            share_id=row.id,
        )
    if not outcome.created:
        response.status_code = 200
    return ShareRead.of(row, caller.institution_id)


@router.get("", response_model=Page[ShareRead])
async def list_shares(session: Session, caller: CurrentUser, paging: Paging) -> Page[ShareRead]:
    """The shares the caller's institution made (as origin) or received (as provider)."""
    rows, pagination = await service.list_shares(session, caller, paging=paging)
    return Page[ShareRead](
        items=[ShareRead.of(row, caller.institution_id) for row in rows], pagination=pagination
    )


@router.get("/{share_id}", response_model=ShareRead)
async def get_share(share_id: int, session: Session, caller: CurrentUser) -> ShareRead:
    """One share; 404 unless the caller's institution is its origin or its provider."""
    row = await service.get_share(session, caller, share_id=share_id)
    return ShareRead.of(row, caller.institution_id)


@router.post("/{share_id}/revoke", response_model=ShareRead)
async def revoke_share(
    share_id: int, session: Session, caller: CurrentUser, platform: PlatformDep
) -> ShareRead:
    """Withdraw a share (origin only): the de-identified copy is deleted from the shared store."""
    row = await service.revoke(session, caller, platform=platform, share_id=share_id)
    return ShareRead.of(row, caller.institution_id)
