"""The agreement-entitlement domain as plain data: no framework, no I/O.

These frozen dataclasses are what `decide()` reasons over. The registry loads
them from the database; unit tests build them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class InstitutionKind(StrEnum):
    UNIVERSITY_HOSPITAL = "university_hospital"
    GENERAL_HOSPITAL = "general_hospital"
    SPECIALIST_CENTRE = "specialist_centre"
    CANCER_CENTRE = "cancer_centre"
    MINISTRY = "ministry"
    PRIVATE_GROUP = "private_group"
    PROVINCIAL_HOSPITAL = "provincial_hospital"
    REGIONAL_AUTHORITY = "regional_authority"
    OPERATOR = "operator"
    """The organisation that runs the platform; its admins and auditors act platform-wide."""


class AgreementKind(StrEnum):
    COOPERATION = "cooperation"
    TWINNING = "twinning"
    MEMORANDUM = "memorandum"
    EXCLUSIVE_PARTNERSHIP = "exclusive_partnership"


class AgreementStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    TERMINATED = "terminated"


class PartyRole(StrEnum):
    REQUESTER = "requester"
    PROVIDER = "provider"
    BOTH = "both"

    def may_request(self) -> bool:
        return self in (PartyRole.REQUESTER, PartyRole.BOTH)

    def may_provide(self) -> bool:
        return self in (PartyRole.PROVIDER, PartyRole.BOTH)


class ServiceKind(StrEnum):
    SECOND_OPINION = "second_opinion"
    TELECONSULTATION = "teleconsultation"
    IMAGING_REVIEW = "imaging_review"
    PATIENT_TRANSFER = "patient_transfer"
    VISITING_MISSION = "visiting_mission"
    TRAINING = "training"


class QuotaPeriod(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"
    TERM = "term"


class Urgency(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class Identification(StrEnum):
    """How much of the patient's identity may cross the border (PS3.15 vocabulary)."""

    IDENTIFIED = "identified"
    PSEUDONYMISED = "pseudonymised"
    ANONYMISED = "anonymised"


class UsageState(StrEnum):
    """A ledger row's life: reserved while offered, consumed once accepted, or released."""

    RESERVED = "reserved"
    CONSUMED = "consumed"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class DataTerms:
    identification: Identification = Identification.PSEUDONYMISED
    consent_required: bool = True


@dataclass(frozen=True, slots=True)
class Party:
    institution_id: int
    role: PartyRole


@dataclass(frozen=True, slots=True)
class CoverageLine:
    """Which requesters may ask which providers for one service, and on what terms.

    Empty `requesters` or `providers` means every party of the agreement in that
    role; empty `specialties` means any specialty.
    """

    id: int
    service: ServiceKind
    specialties: frozenset[str] = frozenset()
    requesters: frozenset[int] = frozenset()
    providers: frozenset[int] = frozenset()
    quota: int | None = None
    period: QuotaPeriod = QuotaPeriod.TERM
    response_hours: dict[Urgency, int] = field(default_factory=dict, hash=False, compare=False)
    data_terms: DataTerms = DataTerms()


@dataclass(frozen=True, slots=True)
class Agreement:
    """An agreement as `decide()` sees it.

    `valid_from` and `valid_until` are whole days read in `timezone`, both
    inclusive; `valid_until` None means open-ended.
    """

    id: int
    code: str
    status: AgreementStatus
    valid_from: date
    valid_until: date | None
    timezone: str
    parties: tuple[Party, ...]
    lines: tuple[CoverageLine, ...]
    renews_id: int | None = None

    def role_of(self, institution_id: int) -> PartyRole | None:
        for party in self.parties:
            if party.institution_id == institution_id:
                return party.role
        return None


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """One ledger row: a unit of a coverage line held (reserved or consumed) at `at`."""

    line_id: int
    at: datetime
    units: int = 1
