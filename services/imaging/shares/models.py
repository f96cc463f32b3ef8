"""The share row: which original went, as which de-identified study, to whom, under which line."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

import shared.identity.models
import shared.registry.models  # noqa: F401 - institutions, agreements, coverage lines
from shared.db import Base, UTCDateTime, utcnow


class ShareStatus(StrEnum):
    READY = "ready"
    BLOCKED = "blocked"
    REVOKED = "revoked"


class ImagingShare(Base):
    """One study shared with one referral's provider.

    `study_uid` is the original and is never shown to the provider; `shared_study_uid` is
    the keyed UID of the de-identified copy. `referral_id` names a row of the referral
    service and carries no foreign key: no service depends on another's schema.
    """

    __tablename__ = "imaging_shares"
    __table_args__ = (
        Index("ix_imaging_shares_referral_study", "referral_id", "study_uid"),
        Index("ix_imaging_shares_provider_status", "provider_id", "status"),
        Index("ix_imaging_shares_origin_status", "origin_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    shared_study_uid: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    referral_id: Mapped[int] = mapped_column(Integer)
    origin_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    agreement_id: Mapped[int | None] = mapped_column(ForeignKey("agreements.id"), default=None)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("coverage_lines.id"), default=None)
    identification: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    instances: Mapped[int] = mapped_column(Integer, default=0)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    blocked_reason: Mapped[str | None] = mapped_column(Text, default=None)
