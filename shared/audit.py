"""Append-only audit events.

`record()` adds an event to the caller's own transaction, so an action and its
audit land together or not at all. A refused request rolls its transaction
back, so its error carries a `Refusal` that the problem handler writes in a
transaction of its own once the request's transaction is over. The table refuses UPDATE and DELETE at the
database (triggers created by the migration).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Select, String, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, Database, UTCDateTime, utcnow
from shared.logs import request_id_var


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request_id: Mapped[str | None] = mapped_column(String(128), default=None)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    actor_username: Mapped[str | None] = mapped_column(String(120), default=None)
    institution_id: Mapped[int | None] = mapped_column(
        ForeignKey("institutions.id"), default=None, index=True
    )
    counterpart_id: Mapped[int | None] = mapped_column(
        ForeignKey("institutions.id"), default=None, index=True
    )
    """The other institution the action concerns (a provider, a partner), if any."""
    action: Mapped[str] = mapped_column(String(80), index=True)
    resource_type: Mapped[str | None] = mapped_column(String(40), default=None)
    resource_id: Mapped[str | None] = mapped_column(String(80), default=None)
    outcome: Mapped[str] = mapped_column(String(20), default="ok")
    """ok, allowed (an entitlement let data cross), or refused."""
    rule: Mapped[str | None] = mapped_column(String(60), default=None)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a user, or the platform itself (all None) for scheduled work."""

    user_id: int | None = None
    username: str | None = None
    institution_id: int | None = None


SYSTEM = Actor(username="system")


def _event(
    actor: Actor,
    action: str,
    *,
    resource_type: str | None,
    resource_id: object | None,
    counterpart_id: int | None,
    outcome: str,
    rule: str | None,
    reasons: Sequence[str],
    details: dict[str, Any] | None,
) -> AuditEvent:
    return AuditEvent(
        at=utcnow(),
        request_id=request_id_var.get(),
        actor_id=actor.user_id,
        actor_username=actor.username,
        institution_id=actor.institution_id,
        counterpart_id=counterpart_id,
        action=action,
        resource_type=resource_type,
        resource_id=None if resource_id is None else str(resource_id),
        outcome=outcome,
        rule=rule,
        reasons=list(reasons),
        details=details or {},
    )


async def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    *,
    resource_type: str | None = None,
    resource_id: object | None = None,
    counterpart_id: int | None = None,
    outcome: str = "ok",
    rule: str | None = None,
    reasons: Sequence[str] = (),
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    event = _event(
        actor,
        action,
        resource_type=resource_type,
        resource_id=resource_id,
        counterpart_id=counterpart_id,
        outcome=outcome,
        rule=rule,
        reasons=reasons,
        details=details,
    )
    session.add(event)
    await session.flush()
    return event


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused action, to be written after the request's own transaction rolled back."""

    actor: Actor
    action: str
    rule: str
    resource_type: str | None = None
    resource_id: object | None = None
    counterpart_id: int | None = None
    reasons: Sequence[str] = ()
    details: dict[str, Any] | None = None


async def write_refusal(database: Database, refusal: Refusal) -> None:
    async with database.transaction() as session:
        session.add(
            _event(
                refusal.actor,
                refusal.action,
                resource_type=refusal.resource_type,
                resource_id=refusal.resource_id,
                counterpart_id=refusal.counterpart_id,
                outcome="refused",
                rule=refusal.rule,
                reasons=refusal.reasons,
                details=refusal.details,
            )
        )


def visible_to(institution_id: int | None, *, everything: bool) -> Select[AuditEvent]:
    """Events an auditor may read: those touching their institution, or all for a platform auditor."""
    query = select(AuditEvent)
    if not everything:
        query = query.where(
            or_(
                AuditEvent.institution_id == institution_id,
                AuditEvent.counterpart_id == institution_id,
            )
        )
    return query
