"""How far the pick-up has read each institution's Orthanc change log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

import shared.registry.models  # noqa: F401 - institutions
from shared.db import Base, UTCDateTime, utcnow


class OrthancCursor(Base):
    """The sequence number of the last change of `GET /changes` already processed."""

    __tablename__ = "orthanc_cursors"

    institution_id: Mapped[int] = mapped_column(
        ForeignKey("institutions.id"), primary_key=True, autoincrement=False
    )
    last_change: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
