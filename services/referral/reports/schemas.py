"""Bodies of the reports API."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field


class Counts(BaseModel):
    """Units of coverage by what the ledger says became of them."""

    consumed: int
    """Work taken on (a referral accepted, a mission agreed)."""
    released: int
    """Work declined, cancelled, expired or sent elsewhere."""
    reserved: int
    """Work still waiting for the provider's answer."""
    total: int


class Breakdown(Counts):
    key: str
    label: str


class OutcomeCount(BaseModel):
    key: str
    """The referrer's recorded outcome once closed, else how the work stands or ended."""
    label: str
    count: int


class MonthCount(Counts):
    month: str
    """YYYY-MM in the agreement's time zone."""


class PeriodRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    timezone: str
    """The agreement's zone, in which the days and months are read."""


class AgreementRef(BaseModel):
    id: int
    code: str
    title: str


class ActivityRead(BaseModel):
    agreement: AgreementRef
    period: PeriodRead
    states: dict[str, str]
    """Labels of the ledger states in the reader's language."""
    totals: Counts
    by_service: list[Breakdown]
    by_specialty: list[Breakdown]
    by_outcome: list[OutcomeCount]
    """Referrals only, most frequent first."""
    months: list[MonthCount]
    """Every month of the period in order, empty ones included: the chart's series."""
    median_response_hours: float | None
    """Offer to accept or decline, net of the time the referrer owed information."""
    responses: int
    """How many answers the median is taken over."""
