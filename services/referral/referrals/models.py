"""Referral rows. Patients stay with their origin institution; partners see views of them."""

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

from services.referral.missions import models as missions  # noqa: F401 - referrals.mission_id's table
from shared.db import Base, UTCDateTime, utcnow


class Patient(Base):
    """A patient as known to the origin institution; this row never crosses a border."""

    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("institution_id", "local_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    local_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    sex: Mapped[str] = mapped_column(String(1))
    birth_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Referral(Base):
    __tablename__ = "referrals"
    __table_args__ = (
        Index("ix_referrals_origin_status", "origin_id", "status"),
        Index("ix_referrals_provider_status", "provider_id", "status"),
        Index("ix_referrals_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    origin_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    question: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    specialty: Mapped[str] = mapped_column(String(60))
    urgency: Mapped[str] = mapped_column(String(20))
    service: Mapped[str] = mapped_column(String(40))
    languages: Mapped[list[str]] = mapped_column(JSON, default=list)
    study_uids: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(20))

    # The current offer: which provider holds it, under which agreement and line.
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), default=None)
    agreement_id: Mapped[int | None] = mapped_column(ForeignKey("agreements.id"), default=None)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("coverage_lines.id"), default=None)
    specialist_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    routing: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """The last ranking of candidate providers, with scores and reasons."""
    tried: Mapped[list[int]] = mapped_column(JSON, default=list)
    offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    """When the provider must have answered; pushed back by the time the referrer owed information."""
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    # Scheduling.
    schedule_kind: Mapped[str | None] = mapped_column(String(20), default=None)
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    schedule_note: Mapped[str | None] = mapped_column(Text, default=None)
    mission_id: Mapped[int | None] = mapped_column(
        ForeignKey("missions.id"), default=None, index=True
    )

    # The closed loop: the specialist's report back, the referrer's acknowledgement and outcome.
    report_findings: Mapped[str | None] = mapped_column(Text, default=None)
    report_recommendations: Mapped[str | None] = mapped_column(Text, default=None)
    reported_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    outcome: Mapped[str | None] = mapped_column(String(20), default=None)
    outcome_note: Mapped[str | None] = mapped_column(Text, default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    patient: Mapped[Patient] = relationship(lazy="joined", innerjoin=True)


class ReferralOffer(Base):
    """Each time a referral is offered to a provider, and how that offer ended."""

    __tablename__ = "referral_offers"

    id: Mapped[int] = mapped_column(primary_key=True)
    referral_id: Mapped[int] = mapped_column(ForeignKey("referrals.id"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"))
    line_id: Mapped[int] = mapped_column(ForeignKey("coverage_lines.id"))
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    outcome: Mapped[str] = mapped_column(String(20), default="pending")
    """pending, accepted, declined, expired (no answer in time), withdrawn (cancelled or rerouted)."""
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    paused_s: Mapped[int] = mapped_column(Integer, default=0)
    """Seconds the clock stood still while the referrer owed information."""


class ReferralEvent(Base):
    """The referral's timeline, shown to both sides; it carries no patient identifiers."""

    __tablename__ = "referral_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    referral_id: Mapped[int] = mapped_column(ForeignKey("referrals.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    actor_name: Mapped[str | None] = mapped_column(String(200), default=None)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Attachment(Base):
    """A file attached to a referral; stored under a generated name, never one from the upload."""

    __tablename__ = "referral_attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    referral_id: Mapped[int] = mapped_column(ForeignKey("referrals.id"), index=True)
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    contains_identifiers: Mapped[bool] = mapped_column(Boolean, default=True)
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    """A submission's Idempotency-Key: the first answer is kept and replayed (IETF draft)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default="started")
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    body: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
