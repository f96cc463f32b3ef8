"""`/api/imaging/shares/{id}/forward` and `/forwarding`: push a share to the provider's store."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel

from services.imaging.forwarding import service
from services.imaging.forwarding.models import Forwarding
from shared.identity.deps import CurrentUser, Session

router = APIRouter(prefix="/api/imaging/shares", tags=["imaging forwarding"])


class ForwardingRead(BaseModel):
    id: int
    share_id: int
    state: str
    total: int
    sent: int
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, row: Forwarding) -> ForwardingRead:
        return cls(
            id=row.id,
            share_id=row.share_id,
            state=row.state,
            total=row.total,
            sent=row.sent,
            attempts=row.attempts,
            last_error=row.last_error,
            next_attempt_at=row.next_attempt_at,
            updated_at=row.updated_at,
        )


@router.post("/{share_id}/forward", response_model=ForwardingRead, status_code=202)
async def forward_share(
    share_id: int, response: Response, session: Session, caller: CurrentUser
) -> ForwardingRead:
    """Push a share's de-identified copy into the provider's own store, in the background.

    Origin coordinators and radiologists only. 202 with a new forwarding, 200 with the
    existing one; 404 for a share the caller may not see; 403 for its provider; 409 when
    the share is not ready; 422 when the provider names no imaging store.
    """
    row, created = await service.start(session, caller, share_id=share_id)
    if not created:
        response.status_code = 200
    return ForwardingRead.of(row)


@router.get("/{share_id}/forwarding", response_model=ForwardingRead)
async def get_forwarding(share_id: int, session: Session, caller: CurrentUser) -> ForwardingRead:
    """Progress of a share's forwarding (origin and provider): state, sent of total, errors."""
    row = await service.progress(session, caller, share_id=share_id)
    return ForwardingRead.of(row)
