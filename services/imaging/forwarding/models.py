"""The forwarding of one share to its provider's store, and each instance confirmed stored there."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

import services.imaging.shares.models  # noqa: F401 - imaging_shares
from shared.db import Base, UTCDateTime, utcnow


class ForwardingState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Forwarding(Base):
    """One share pushed to the provider's own store (`target_url`, its `imaging_store`).

    `total` is the number of instances of the shared copy, `sent` the number confirmed
    at the partner; `attempts` counts runs that found the partner unreachable.
    """

    __tablename__ = "forwardings"

    id: Mapped[int] = mapped_column(primary_key=True)
    share_id: Mapped[int] = mapped_column(ForeignKey("imaging_shares.id"), unique=True)
    target_url: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(20), default=ForwardingState.PENDING.value)
    total: Mapped[int] = mapped_column(Integer, default=0)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ForwardedInstance(Base):
    """An instance the partner store confirmed it holds: never sent again."""

    __tablename__ = "forwarded_instances"

    forwarding_id: Mapped[int] = mapped_column(ForeignKey("forwardings.id"), primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
