"""Bodies of the referral API."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.referral.workflow import Status
from shared.entitlements import vocab
from shared.entitlements.model import Identification, ServiceKind, Urgency
from shared.i18n import LANGUAGES


def _specialty(value: str) -> str:
    if not vocab.is_specialty(value):
        raise ValueError(f"unknown specialty {value!r}; see /api/vocabulary")
    return value


def _language(value: str) -> str:
    if value not in LANGUAGES:
        raise ValueError(f"unsupported language {value!r}; use one of {list(LANGUAGES)}")
    return value


def _past(value: date) -> date:
    if value > date.today() or value.year < 1900:
        raise ValueError("the birth date must be in the past")
    return value


Specialty = Annotated[str, AfterValidator(_specialty)]
Language = Annotated[str, AfterValidator(_language)]
# PS3.5 §9.1: components of digits without leading zeros, dot-separated, at most 64 characters.
StudyUID = Annotated[str, Field(pattern=r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$", max_length=64)]
Text = Annotated[str, Field(min_length=1, max_length=20_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PatientIn(Strict):
    local_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[^\x00-\x1f]+$",
        description="the patient's identifier at the origin institution",
    )
    name: str = Field(min_length=1, max_length=200)
    sex: Literal["F", "M", "O", "U"]
    birth_date: Annotated[date, AfterValidator(_past)]


class ReferralCreate(Strict):
    patient: PatientIn
    question: str = Field(min_length=1, max_length=2000, description="the clinical question")
    summary: Text
    specialty: Specialty
    urgency: Urgency = Urgency.ROUTINE
    service: ServiceKind = ServiceKind.SECOND_OPINION
    languages: list[Language] = Field(default_factory=list, max_length=3)
    study_uids: list[StudyUID] = Field(default_factory=list, max_length=50)
    draft: bool = Field(default=False, description="keep as a draft instead of submitting now")


class DeclineBody(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class RequestInfoBody(Strict):
    question: str = Field(min_length=1, max_length=4000)


class ProvideInfoBody(Strict):
    answer: str = Field(min_length=1, max_length=20_000)


class ScheduleKind(StrEnum):
    TELECONSULT = "teleconsult"
    MISSION = "mission"
    TRANSFER = "transfer"


class ScheduleBody(Strict):
    kind: ScheduleKind
    at: AwareDatetime | None = Field(default=None, description="the slot or transfer date")
    mission_id: int | None = Field(default=None, gt=0)
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.kind is ScheduleKind.MISSION and self.mission_id is None:
            raise ValueError("a mission schedule names its mission_id")
        if self.kind is not ScheduleKind.MISSION and self.at is None:
            raise ValueError(f"a {self.kind.value} schedule needs its date and time (at)")
        return self


class ReportBody(Strict):
    findings: Text
    recommendations: Text


class Outcome(StrEnum):
    IMPROVED = "improved"
    STABLE = "stable"
    WORSENED = "worsened"
    TRANSFERRED = "transferred"
    DECEASED = "deceased"
    UNKNOWN = "unknown"


class AcknowledgeBody(Strict):
    outcome: Outcome
    note: str | None = Field(default=None, max_length=4000)


class CancelBody(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class RerouteBody(Strict):
    provider_id: int = Field(gt=0)
    reason: str = Field(min_length=1, max_length=2000)


class InstitutionRef(BaseModel):
    id: int
    code: str
    name: str


class PatientRead(BaseModel):
    identification: Identification
    pseudonym: str | None
    local_id: str | None
    name: str | None
    sex: str | None
    birth_date: date | None
    birth_year: int | None
    age_band: str | None


class ScheduleRead(BaseModel):
    kind: str | None
    at: datetime | None
    note: str | None
    mission_id: int | None


class ReportRead(BaseModel):
    findings: str
    recommendations: str
    author_id: int | None
    reported_at: datetime
    outcome: Outcome | None
    outcome_note: str | None
    closed_at: datetime | None


class ReferralRead(BaseModel):
    id: int
    status: Status
    side: Literal["origin", "provider", "observer"]
    origin: InstitutionRef
    provider: InstitutionRef | None
    patient: PatientRead
    question: str
    summary: str
    specialty: str
    urgency: Urgency
    service: ServiceKind
    languages: list[str]
    study_uids: list[str]
    agreement_id: int | None
    line_id: int | None
    specialist_id: int | None
    routing: list[dict[str, Any]]
    offered_at: datetime | None
    due_at: datetime | None
    schedule: ScheduleRead | None
    report: ReportRead | None
    actions: list[str]
    """What the caller may do now: the buttons a client shows."""
    created_at: datetime
    updated_at: datetime


class ReferralSummary(BaseModel):
    """A worklist row."""

    id: int
    status: Status
    side: Literal["origin", "provider", "observer"]
    origin_code: str
    provider_code: str | None
    patient_label: str
    specialty: str
    urgency: Urgency
    service: ServiceKind
    question: str
    waiting_since: datetime
    due_at: datetime | None
    overdue: bool


class EventRead(BaseModel):
    id: int
    at: datetime
    kind: str
    actor_name: str | None
    institution_id: int | None
    data: dict[str, Any]


class AttachmentRead(BaseModel):
    id: int
    filename: str
    media_type: str
    size: int
    sha256: str
    contains_identifiers: bool
    uploaded_at: datetime
