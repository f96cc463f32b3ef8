"""Request and response bodies of the registry API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.entitlements import vocab
from shared.entitlements.model import (
    AgreementKind,
    AgreementStatus,
    Identification,
    InstitutionKind,
    PartyRole,
    QuotaPeriod,
    ServiceKind,
    Urgency,
)


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _specialty(value: str) -> str:
    if not vocab.is_specialty(value):
        raise ValueError(f"unknown specialty {value!r}")
    return value


TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_zone)]
Specialty = Annotated[str, AfterValidator(_specialty)]
Code = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,39}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Names(Strict):
    ar: str = Field(min_length=1, max_length=300)
    fr: str = Field(min_length=1, max_length=300)
    en: str = Field(min_length=1, max_length=300)


class InstitutionCreate(Strict):
    code: Code
    names: Names
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    city: str = Field(min_length=1, max_length=120)
    kind: InstitutionKind
    timezone: TimeZone
    imaging_store: str | None = Field(default=None, max_length=500)


class InstitutionRead(BaseModel):
    id: int
    code: str
    names: Names
    name: str
    country: str
    city: str
    kind: InstitutionKind
    timezone: str
    imaging_store: str | None


class PartyIn(Strict):
    institution_id: int = Field(gt=0)
    role: PartyRole


class PartyRead(BaseModel):
    institution_id: int
    institution_code: str
    institution_name: str
    role: PartyRole


class DataTermsIn(Strict):
    identification: Identification = Identification.PSEUDONYMISED
    consent_required: bool = True


class ResponseHours(Strict):
    routine: int = Field(default=120, ge=1, le=24 * 365)
    urgent: int = Field(default=48, ge=1, le=24 * 365)
    emergency: int = Field(default=6, ge=1, le=24 * 365)

    def as_dict(self) -> dict[str, int]:
        return {
            Urgency.ROUTINE: self.routine,
            Urgency.URGENT: self.urgent,
            Urgency.EMERGENCY: self.emergency,
        }


class SafePrivateTag(Strict):
    """A private attribute known to hold no identity (PS3.15 E.3.10), e.g. (0019,xx23) GEMS_ACQU_01."""

    creator: str = Field(min_length=1, max_length=64, description="the private creator")
    group: int = Field(ge=0x0009, le=0xFFFF, description="the odd private group")
    element: int = Field(
        ge=0x00, le=0xFF, description="the element offset within the creator's block"
    )

    @model_validator(mode="after")
    def _odd_group(self) -> Self:
        if self.group % 2 == 0:
            raise ValueError("private groups are odd")
        return self


class ImagingTerms(Strict):
    """How shared images are de-identified on this line (PS3.15 Annex E options).

    Unset fields take the default of the line's identification: pseudonymised lines keep
    shifted dates, patient characteristics and cleaned descriptors; anonymised lines apply
    the Basic Profile alone; identified lines share the originals.
    """

    retain_dates_shifted: bool | None = None
    retain_patient_characteristics: bool | None = None
    retain_device_identity: bool | None = None
    clean_descriptors: bool | None = None
    allow_burned_in: bool = False
    safe_private_tags: list[SafePrivateTag] = Field(default_factory=list, max_length=100)


class CoverageLineCreate(Strict):
    service: ServiceKind
    specialties: list[Specialty] = Field(
        default_factory=list, max_length=60, description="empty means any specialty"
    )
    requesters: list[int] = Field(
        default_factory=list, max_length=50, description="empty means every requesting party"
    )
    providers: list[int] = Field(
        default_factory=list, max_length=50, description="empty means every providing party"
    )
    quota: int | None = Field(default=None, ge=1, le=1_000_000, description="None means unlimited")
    period: QuotaPeriod = QuotaPeriod.TERM
    response_hours: ResponseHours = Field(default_factory=ResponseHours)
    data_terms: DataTermsIn = Field(default_factory=DataTermsIn)
    imaging: ImagingTerms = Field(default_factory=ImagingTerms)
    note: str | None = Field(default=None, max_length=2000)


class CoverageLineRead(BaseModel):
    id: int
    agreement_id: int
    service: ServiceKind
    specialties: list[str]
    requesters: list[int]
    providers: list[int]
    quota: int | None
    period: QuotaPeriod
    response_hours: dict[str, int]
    data_terms: DataTermsIn
    imaging: ImagingTerms
    note: str | None
    active: bool
    used: int | None = None
    """Units held in the current period (reserved or consumed), when asked for."""


class AgreementCreate(Strict):
    code: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,59}$")]
    title: str = Field(min_length=1, max_length=500)
    kind: AgreementKind
    valid_from: date
    valid_until: date | None = None
    timezone: TimeZone | None = Field(
        default=None, description="defaults to the first provider's zone"
    )
    parties: list[PartyIn] = Field(min_length=2, max_length=20)
    coverage: list[CoverageLineCreate] = Field(default_factory=list, max_length=100)
    status: AgreementStatus = AgreementStatus.DRAFT

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        ids = [p.institution_id for p in self.parties]
        if len(set(ids)) != len(ids):
            raise ValueError("an institution is named twice among the parties")
        if not any(p.role.may_request() for p in self.parties):
            raise ValueError("no party may request")
        if not any(p.role.may_provide() for p in self.parties):
            raise ValueError("no party may provide")
        if self.status not in (AgreementStatus.DRAFT, AgreementStatus.ACTIVE):
            raise ValueError("a new agreement is a draft or active")
        return self


class AgreementRenew(Strict):
    code: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,59}$")]
    title: str | None = Field(default=None, max_length=500)
    valid_from: date
    valid_until: date | None = None
    copy_coverage: bool = True
    status: AgreementStatus = AgreementStatus.DRAFT

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        if self.status not in (AgreementStatus.DRAFT, AgreementStatus.ACTIVE):
            raise ValueError("a renewal starts as a draft or active")
        return self


class StatusChange(Strict):
    reason: str | None = Field(default=None, max_length=2000)


class AgreementRead(BaseModel):
    id: int
    code: str
    title: str
    kind: AgreementKind
    status: AgreementStatus
    valid_from: date
    valid_until: date | None
    timezone: str
    renews_id: int | None
    renewed_by: list[int]
    parties: list[PartyRead]
    coverage: list[CoverageLineRead]
    created_at: datetime


class DataTermsRead(BaseModel):
    identification: Identification
    consent_required: bool


class ReasonRead(BaseModel):
    rule: str
    text: str


class DecisionRead(BaseModel):
    allowed: bool
    rule: str
    requester_id: int
    provider_id: int
    service: ServiceKind
    specialty: str | None
    at: datetime
    agreement_id: int | None
    agreement_code: str | None
    line_id: int | None
    quota: int | None
    used: int
    remaining: int | None
    period: QuotaPeriod | None
    period_start: datetime | None
    period_end: datetime | None
    data_terms: DataTermsRead | None
    response_hours: dict[str, int]
    reasons: list[ReasonRead]
