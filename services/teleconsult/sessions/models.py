"""Teleconsult rows: the session, its invited participants, consents, quality samples, recordings."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

import shared.identity.models
import shared.registry.models  # noqa: F401 - institutions, agreements, coverage lines, users
from shared.db import Base, UTCDateTime, utcnow


class SessionStatus(StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    """Someone has joined; `started_at` is the first join."""
    ENDED = "ended"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    COMPLETED = "completed"
    NO_SHOW = "no_show"
    TECHNICAL_FAILURE = "technical_failure"


class ParticipantKind(StrEnum):
    REFERRING = "referring"
    """A user of the referral's origin."""
    SPECIALIST = "specialist"
    """A user of the referral's provider."""
    INTERPRETER = "interpreter"
    PATIENT = "patient"
    """Joins without an account, through a one-time link."""


class Teleconsult(Base):
    """One scheduled teleconsultation for one referral, between its origin and its provider.

    `referral_id` names a row of the referral service and carries no foreign key: no
    service depends on another's schema.
    """

    __tablename__ = "teleconsults"
    __table_args__ = (
        Index("ix_teleconsults_origin_starts", "origin_id", "starts_at"),
        Index("ix_teleconsults_provider_starts", "provider_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    referral_id: Mapped[int] = mapped_column(Integer, index=True)
    origin_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    agreement_id: Mapped[int | None] = mapped_column(ForeignKey("agreements.id"), default=None)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("coverage_lines.id"), default=None)
    specialty: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(20))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    low_bandwidth: Mapped[bool] = mapped_column(Boolean, default=False)
    """Clients send audio and low-resolution video only (hospitals on weak links)."""
    host_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ended_by: Mapped[str | None] = mapped_column(String(60), default=None)
    """The peer that ended it (`user:<id>`), as in the join grant."""
    outcome: Mapped[str | None] = mapped_column(String(20), default=None)
    outcome_note: Mapped[str | None] = mapped_column(Text, default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    cancel_reason: Mapped[str | None] = mapped_column(Text, default=None)

    @property
    def duration_s(self) -> int | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0, int((self.ended_at - self.started_at).total_seconds()))


class Participant(Base):
    """An invited participant: a user of either institution, or the patient through a link.

    The patient's link secret is stored as its SHA-256 only and is spent by the first join.
    """

    __tablename__ = "teleconsult_participants"
    __table_args__ = (UniqueConstraint("teleconsult_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    teleconsult_id: Mapped[int] = mapped_column(
        ForeignKey("teleconsults.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    """The user's institution; for the patient, the referral's origin."""
    kind: Mapped[str] = mapped_column(String(20))
    host: Mapped[bool] = mapped_column(Boolean, default=False)
    display_name: Mapped[str] = mapped_column(String(200))
    lang: Mapped[str] = mapped_column(String(5), default="en")
    secret_hash: Mapped[str | None] = mapped_column(String(64), default=None, unique=True)
    secret_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    first_joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    joins: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def peer(self) -> str:
        """The participant's key in the room (`tokens.JoinGrant.peer`)."""
        return f"user:{self.user_id}" if self.user_id is not None else f"guest:{self.id}"


class Consent(Base):
    """A participant's answer on recording; the audit log keeps every change."""

    __tablename__ = "teleconsult_consents"
    __table_args__ = (UniqueConstraint("participant_id", "purpose"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    teleconsult_id: Mapped[int] = mapped_column(
        ForeignKey("teleconsults.id", ondelete="CASCADE"), index=True
    )
    participant_id: Mapped[int] = mapped_column(
        ForeignKey("teleconsult_participants.id", ondelete="CASCADE")
    )
    purpose: Mapped[str] = mapped_column(String(20), default="recording")
    granted: Mapped[bool] = mapped_column(Boolean)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class QualitySample(Base):
    """One `getStats()` summary posted by a participant's client (W3C webrtc-stats)."""

    __tablename__ = "teleconsult_quality_samples"
    __table_args__ = (
        Index("ix_teleconsult_quality_samples_participant_at", "participant_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    teleconsult_id: Mapped[int] = mapped_column(
        ForeignKey("teleconsults.id", ondelete="CASCADE"), index=True
    )
    participant_id: Mapped[int] = mapped_column(
        ForeignKey("teleconsult_participants.id", ondelete="CASCADE")
    )
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rtt_ms: Mapped[float | None] = mapped_column(Float, default=None)
    packet_loss_pct: Mapped[float | None] = mapped_column(Float, default=None)
    audio_in_kbps: Mapped[float | None] = mapped_column(Float, default=None)
    audio_out_kbps: Mapped[float | None] = mapped_column(Float, default=None)
    video_in_kbps: Mapped[float | None] = mapped_column(Float, default=None)
    video_out_kbps: Mapped[float | None] = mapped_column(Float, default=None)


class Recording(Base):
    """A recording file of a session, kept under a generated name with its checksum."""

    __tablename__ = "teleconsult_recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    teleconsult_id: Mapped[int] = mapped_column(
        ForeignKey("teleconsults.id", ondelete="CASCADE"), index=True
    )
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    media_type: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
