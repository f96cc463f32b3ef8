"""`GET /api/audit`: the audit trail for auditors, filtered and paginated."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel

from shared import audit
from shared.identity.deps import CurrentUser, Session, require
from shared.identity.models import Role
from shared.pagination import Page, Paging, paginate

router = APIRouter(tags=["audit"])


class AuditEventRead(BaseModel):
    id: int
    at: datetime
    request_id: str | None
    actor_id: int | None
    actor_username: str | None
    institution_id: int | None
    counterpart_id: int | None
    action: str
    resource_type: str | None
    resource_id: str | None
    outcome: str
    rule: str | None
    reasons: list[str]
    details: dict[str, Any]


@router.get("/api/audit", response_model=Page[AuditEventRead])
async def list_audit_events(
    session: Session,
    caller: CurrentUser,
    paging: Paging,
    action: Annotated[
        str | None, Query(max_length=80, description="exact action, or a prefix ending in '.'")
    ] = None,
    outcome: Annotated[str | None, Query(pattern="^(ok|allowed|refused)$")] = None,
    actor: Annotated[str | None, Query(max_length=120, description="username")] = None,
    resource_type: Annotated[str | None, Query(max_length=40)] = None,
    resource_id: Annotated[str | None, Query(max_length=80)] = None,
    request_id: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[AwareDatetime | None, Query()] = None,
    until: Annotated[AwareDatetime | None, Query()] = None,
) -> Page[AuditEventRead]:
    """Audit events touching the auditor's institution (all of them for the operator), newest first."""
    require(caller, Role.AUDITOR, action="audit.read", rule="auditor_required")
    query = audit.visible_to(caller.institution_id, everything=caller.operator)
    event = audit.AuditEvent
    if action:
        query = query.where(
            event.action.startswith(action) if action.endswith(".") else event.action == action
        )
    filters = [
        (event.outcome, outcome),
        (event.actor_username, actor),
        (event.resource_type, resource_type),
        (event.resource_id, resource_id),
        (event.request_id, request_id),
    ]
    for column, value in filters:
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(event.at >= since)
    if until is not None:
        query = query.where(event.at < until)
    rows, pagination = await paginate(
        session, query.order_by(event.at.desc(), event.id.desc()), paging
    )
    return Page(
        items=[AuditEventRead.model_validate(r, from_attributes=True) for r in rows],
        pagination=pagination,
    )
