"""ORM rows of the registry; `to_domain()` turns them into `shared.entitlements` data."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db import Base, UTCDateTime, utcnow
from shared.entitlements import model as m


class Institution(Base):
    __tablename__ = "institutions"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name_ar: Mapped[str] = mapped_column(String(300))
    name_fr: Mapped[str] = mapped_column(String(300))
    name_en: Mapped[str] = mapped_column(String(300))
    country: Mapped[str] = mapped_column(String(2))
    city: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(40))
    timezone: Mapped[str] = mapped_column(String(64))
    imaging_store: Mapped[str | None] = mapped_column(String(500), default=None)
    """Where the institution's DICOM store answers (an Orthanc URL), if it has one."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def name(self, lang: str) -> str:
        return {"ar": self.name_ar, "fr": self.name_fr}.get(lang, self.name_en)


class Agreement(Base):
    __tablename__ = "agreements"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(60), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), index=True)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date, default=None)
    timezone: Mapped[str] = mapped_column(String(64))
    renews_id: Mapped[int | None] = mapped_column(ForeignKey("agreements.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    parties: Mapped[list[AgreementParty]] = relationship(
        back_populates="agreement",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="AgreementParty.id",
    )
    lines: Mapped[list[CoverageLine]] = relationship(
        back_populates="agreement",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="CoverageLine.id",
    )

    def to_domain(self) -> m.Agreement:
        return m.Agreement(
            id=self.id,
            code=self.code,
            status=m.AgreementStatus(self.status),
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            timezone=self.timezone,
            parties=tuple(m.Party(p.institution_id, m.PartyRole(p.role)) for p in self.parties),
            lines=tuple(line.to_domain() for line in self.lines if line.active),
            renews_id=self.renews_id,
        )


class AgreementParty(Base):
    __tablename__ = "agreement_parties"
    __table_args__ = (UniqueConstraint("agreement_id", "institution_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id", ondelete="CASCADE"))
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))

    agreement: Mapped[Agreement] = relationship(back_populates="parties")


class CoverageLine(Base):
    __tablename__ = "coverage_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("agreements.id", ondelete="CASCADE"), index=True
    )
    service: Mapped[str] = mapped_column(String(40))
    specialties: Mapped[list[str]] = mapped_column(JSON, default=list)
    requesters: Mapped[list[int]] = mapped_column(JSON, default=list)
    providers: Mapped[list[int]] = mapped_column(JSON, default=list)
    quota: Mapped[int | None] = mapped_column(Integer, default=None)
    period: Mapped[str] = mapped_column(String(20), default=m.QuotaPeriod.TERM.value)
    response_hours: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    identification: Mapped[str] = mapped_column(String(20))
    consent_required: Mapped[bool] = mapped_column(Boolean, default=True)
    imaging: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """De-identification options for shared images (`schemas.ImagingTerms`); None: the defaults."""
    note: Mapped[str | None] = mapped_column(Text, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    """A withdrawn line stays for the ledger's history but grants nothing."""

    agreement: Mapped[Agreement] = relationship(back_populates="lines")

    def to_domain(self) -> m.CoverageLine:
        return m.CoverageLine(
            id=self.id,
            service=m.ServiceKind(self.service),
            specialties=frozenset(self.specialties or ()),
            requesters=frozenset(self.requesters or ()),
            providers=frozenset(self.providers or ()),
            quota=self.quota,
            period=m.QuotaPeriod(self.period),
            response_hours={m.Urgency(k): int(v) for k, v in (self.response_hours or {}).items()},
            data_terms=m.DataTerms(m.Identification(self.identification), self.consent_required),
        )


class UsageEntry(Base):
    """The usage ledger: one row per unit of a coverage line held by a piece of work.

    Rows are never deleted; releasing a unit sets `state` to released.
    """

    __tablename__ = "usage_entries"
    __table_args__ = (
        Index("ix_usage_entries_line_state_at", "line_id", "state", "occurred_at"),
        UniqueConstraint(
            "line_id", "resource_type", "resource_id", name="uq_usage_entries_resource"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("coverage_lines.id"))
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"), index=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    service: Mapped[str] = mapped_column(String(40))
    specialty: Mapped[str | None] = mapped_column(String(60), default=None)
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str] = mapped_column(String(80))
    units: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
