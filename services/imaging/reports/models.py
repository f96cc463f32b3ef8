"""The report row: what a provider's radiologist found on a shared study, and when they signed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

import shared.identity.models  # noqa: F401 - users
from services.imaging.shares import models as shares  # noqa: F401 - imaging_shares
from shared.db import Base, UTCDateTime, utcnow


class ImagingReport(Base):
    """The signed report on one share; `author_name` is kept as it was at signing."""

    __tablename__ = "imaging_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    share_id: Mapped[int] = mapped_column(ForeignKey("imaging_shares.id"), unique=True)
    findings: Mapped[str] = mapped_column(Text)
    impression: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    author_name: Mapped[str] = mapped_column(String(200))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
