"""Teleconsult payloads: `XCreate`, `XRead` and the bodies of the actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from services.teleconsult.sessions.models import Outcome

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Kbps = Annotated[float, Field(ge=0, le=100_000)]


class PatientInvite(BaseModel):
    display_name: Name
    language: Literal["en", "fr", "ar"] = "en"


class TeleconsultCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    referral_id: int
    starts_at: AwareDatetime
    duration_minutes: int = Field(ge=5, le=240)
    participants: list[int] = Field(default_factory=list, max_length=50)
    """User ids of the two institutions; the creator is added as the host."""
    interpreter: int | None = None
    patient: PatientInvite | None = None
    low_bandwidth: bool = False


class TeleconsultUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    low_bandwidth: StrictBool


class CancelBody(BaseModel):
    reason: Text


class EndBody(BaseModel):
    outcome: Outcome
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""


class GuestJoin(BaseModel):
    secret: Annotated[str, StringConstraints(min_length=16, max_length=200)]


class StatsSample(BaseModel):
    """A client's `getStats()` summary over its last few seconds (W3C webrtc-stats)."""

    model_config = ConfigDict(extra="forbid")

    measured_at: AwareDatetime
    rtt_ms: float | None = Field(default=None, ge=0, le=60_000)
    packet_loss_pct: float | None = Field(default=None, ge=0, le=100)
    audio_in_kbps: Kbps | None = None
    audio_out_kbps: Kbps | None = None
    video_in_kbps: Kbps | None = None
    video_out_kbps: Kbps | None = None


class ConsentBody(BaseModel):
    recording: StrictBool
    """Strictly true or false: a consent is never inferred from "yes" or 1."""


class SlotRead(BaseModel):
    timezone: str
    starts_at: datetime
    """Local wall-clock time with its offset."""
    ends_at: datetime
    utc_offset: str


class ParticipantRead(BaseModel):
    id: int
    peer: str
    user_id: int | None
    kind: str
    host: bool
    display_name: str
    institution_id: int
    lang: str
    slot: SlotRead
    """The slot in this participant's time zone (their institution's)."""
    invitation_pending: bool
    """A patient whose one-time link has not been used yet."""
    first_joined_at: datetime | None
    last_joined_at: datetime | None
    left_at: datetime | None
    joins: int


class TeleconsultRead(BaseModel):
    id: int
    referral_id: int
    origin_id: int
    provider_id: int
    specialty: str
    status: str
    starts_at: datetime
    ends_at: datetime
    duration_minutes: int
    low_bandwidth: StrictBool
    host_id: int
    your_slot: SlotRead
    """The slot in the caller's time zone (their institution's)."""
    participants: list[ParticipantRead]
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: int | None
    outcome: str | None
    outcome_note: str | None
    cancelled_at: datetime | None
    cancel_reason: str | None


class PatientLink(BaseModel):
    participant_id: int
    secret: str
    """Shown once: only its hash is kept. The patient sends it to `/join/guest`."""
    path: str


class TeleconsultCreated(TeleconsultRead):
    patient_link: PatientLink | None = None


class JoinRead(BaseModel):
    """What a client needs to open the signalling socket and its RTCPeerConnection."""

    token: str
    """The join token: `?token=` of `ws_url`; checked at connect and single use (ask this
    route again for another, e.g. to reconnect)."""
    expires_in: int
    ice_servers: list[dict[str, Any]]
    ws_url: str
    role: str
    waiting: bool
    """True: the peer waits in the waiting room until the host admits it."""
    peer: str
    low_bandwidth: StrictBool
    session_pass: str | None = None
    """Guests only: a bearer pass for this session's join, stats and consent routes."""
    session_pass_expires_in: int | None = None


class Spread(BaseModel):
    median: float | None
    p95: float | None


class QualityRead(BaseModel):
    samples: int
    rtt_ms: Spread
    packet_loss_pct: Spread
    audio_in_kbps: Spread
    audio_out_kbps: Spread
    video_in_kbps: Spread
    video_out_kbps: Spread


class ReportParticipant(BaseModel):
    id: int
    peer: str
    kind: str
    display_name: str
    institution_id: int
    first_joined_at: datetime | None
    last_joined_at: datetime | None
    left_at: datetime | None
    joins: int
    recording_consent: bool | None
    quality: QualityRead


class ReportRead(BaseModel):
    id: int
    referral_id: int
    status: str
    starts_at: datetime
    ends_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: int | None
    outcome: str | None
    outcome_note: str | None
    low_bandwidth: StrictBool
    participants: list[ReportParticipant]


class ConsentRead(BaseModel):
    participant_id: int
    peer: str
    display_name: str
    kind: str
    joined: bool
    recording: bool | None
    """None: not answered yet."""
    decided_at: datetime | None


class ConsentsRead(BaseModel):
    recording_allowed: bool
    consents: list[ConsentRead]


class RecordingRead(BaseModel):
    id: int
    teleconsult_id: int
    media_type: str
    size: int
    sha256: str
    started_at: datetime | None
    ended_at: datetime | None
    created_at: datetime
