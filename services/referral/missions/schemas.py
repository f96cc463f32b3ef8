"""Bodies of the missions API."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from services.referral.referrals.schemas import InstitutionRef, Outcome, PatientRead
from services.referral.workflow import Status
from shared.entitlements import vocab
from shared.entitlements.model import Urgency

LONGEST = timedelta(days=366)


def _specialty(value: str) -> str:
    if not vocab.is_specialty(value):
        raise ValueError(f"unknown specialty {value!r}; see /api/vocabulary")
    return value


Specialty = Annotated[str, AfterValidator(_specialty)]


class MissionStatus(StrEnum):
    PLANNED = "planned"
    CANCELLED = "cancelled"
    DONE = "done"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MissionCreate(Strict):
    agreement_id: int | None = Field(
        default=None, gt=0, description="defaults to the agreement the decision finds"
    )
    provider_id: int = Field(gt=0, description="the institution whose team travels")
    host_id: int = Field(gt=0, description="the hospital the team visits, which refers patients")
    title: str = Field(min_length=1, max_length=300)
    starts_on: date
    ends_on: date
    specialties: list[Specialty] = Field(
        default_factory=list, max_length=20, description="empty means any the line covers"
    )
    capacity: int = Field(ge=1, le=500, description="how many patients the team can see")
    team: str | None = Field(default=None, max_length=4000, description="who travels")

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.ends_on < self.starts_on:
            raise ValueError("ends_on is before starts_on")
        if self.ends_on - self.starts_on > LONGEST:
            raise ValueError("a mission lasts at most a year")
        if self.provider_id == self.host_id:
            raise ValueError("the provider and the host are the same institution")
        if len(set(self.specialties)) != len(self.specialties):
            raise ValueError("a specialty is named twice")
        return self


class MissionCancel(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class MissionPatient(BaseModel):
    """A referral on the mission's patient list; the patient as the caller's side may see them."""

    referral_id: int
    status: Status
    specialty: str
    urgency: Urgency
    outcome: Outcome | None
    scheduled_for: datetime | None
    patient: PatientRead


class MissionSummary(BaseModel):
    id: int
    agreement_id: int
    agreement_code: str
    provider: InstitutionRef
    host: InstitutionRef
    title: str
    starts_on: date
    ends_on: date
    specialties: list[str]
    capacity: int
    booked: int
    remaining: int
    team: str | None
    status: MissionStatus
    side: str
    """provider or host: which end of the mission the caller's institution is."""
    created_at: datetime


class MissionRead(MissionSummary):
    patients: list[MissionPatient]
    outcomes: dict[str, int]
    """Booked referrals by outcome (the referrer's recorded outcome, else the referral's status)."""


class MissionCancelled(MissionRead):
    to_reschedule: list[int]
    """Referrals still scheduled onto this mission: they must be rescheduled."""
    to_reschedule_count: int
