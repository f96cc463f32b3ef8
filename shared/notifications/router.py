"""The in-app notifications of the caller: list them, mark them read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from shared.identity.deps import CurrentUser, Session
from shared.notifications import schemas as s
from shared.notifications import service
from shared.pagination import Paging

router = APIRouter(tags=["notifications"])


@router.get("/api/notifications", response_model=s.NotificationPage)
async def list_notifications(
    session: Session,
    caller: CurrentUser,
    paging: Paging,
    unread: Annotated[
        bool | None, Query(description="true: only unread ones; false: only read ones")
    ] = None,
) -> s.NotificationPage:
    """The caller's own notifications, newest first, with how many are still unread."""
    rows, pagination = await service.list_own(session, caller, paging=paging, unread=unread)
    return s.NotificationPage(
        items=[s.NotificationRead.model_validate(row) for row in rows],
        pagination=pagination,
        unread_count=await service.unread_count(session, caller),
    )


@router.post("/api/notifications/read-all", response_model=s.NotificationsMarked)
async def mark_all_read(session: Session, caller: CurrentUser) -> s.NotificationsMarked:
    """Mark every unread notification of the caller read."""
    marked = await service.mark_all_read(session, caller)
    return s.NotificationsMarked(
        marked=marked, unread_count=await service.unread_count(session, caller)
    )


@router.post("/api/notifications/{notification_id}/read", response_model=s.NotificationRead)
async def mark_read(
    session: Session, caller: CurrentUser, notification_id: int
) -> s.NotificationRead:
    """Mark one of the caller's notifications read; another user's answers 404, as a missing one."""
    row = await service.mark_read(session, caller, notification_id=notification_id)
    return s.NotificationRead.model_validate(row)
