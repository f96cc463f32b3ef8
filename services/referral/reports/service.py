"""The activity report of an agreement over a period, computed from the usage ledger.

The ledger says what each unit of the agreement's coverage became: consumed
(work taken on and done), released (declined, cancelled, expired, rerouted),
reserved (still waiting for the provider). Referral rows add how each piece of
work ended, and offers the provider's response times. Everything below the
`activity()` entry point is a pure function over plain rows.

Periods are whole days read in the agreement's own time zone, both ends
included, like its validity dates; months are that zone's months.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.referral.reports import repository as repo
from services.referral.reports import schemas as s
from services.referral.reports.repository import Offer, ReferralFacts, Usage
from shared import audit
from shared.entitlements import vocab
from shared.entitlements.model import UsageState
from shared.i18n import translate
from shared.identity.deps import Caller
from shared.identity.models import Role
from shared.problems import Forbidden, NotFound, Unprocessable
from shared.registry import repository as registry_repo
from shared.registry.models import Agreement

STATES: tuple[str, ...] = (
    UsageState.CONSUMED.value,
    UsageState.RELEASED.value,
    UsageState.RESERVED.value,
)
MAX_YEARS = 5
UNSPECIFIED = "unspecified"
REFERRAL = "referral"
READERS = (Role.COORDINATOR, Role.AUDITOR, Role.ADMIN)


# Pure rules ---------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """Units by ledger state."""

    consumed: int = 0
    released: int = 0
    reserved: int = 0

    def add(self, state: str, units: int = 1) -> None:
        if state in STATES:
            setattr(self, state, getattr(self, state) + units)

    @property
    def total(self) -> int:
        return self.consumed + self.released + self.reserved


@dataclass(frozen=True, slots=True)
class Activity:
    start: date
    end: date
    timezone: str
    totals: Tally
    by_service: dict[str, Tally]
    by_specialty: dict[str, Tally]
    by_outcome: dict[str, int]
    months: dict[str, Tally]
    """Every month of the period, in order, empty ones included (a chart's axis)."""
    response_hours: list[float] = field(default_factory=list)

    @property
    def median_response_hours(self) -> float | None:
        return median(self.response_hours)


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a common year
        return day.replace(year=day.year + years, month=3, day=1)


def period_error(start: date, end: date) -> str | None:
    """Why a period cannot be reported on, or None: `to` not before `from`, at most five years."""
    if end < start:
        return "`to` is before `from`"
    if end >= _add_years(start, MAX_YEARS):
        return f"a report covers at most {MAX_YEARS} years"
    return None


def default_start(end: date) -> date:
    """The first day of a twelve-month chart ending in `end`'s month."""
    months_back = end.year * 12 + end.month - 1 - 11
    return date(months_back // 12, months_back % 12 + 1, 1)


def bounds(start: date, end: date, timezone: str) -> tuple[datetime, datetime]:
    """The instants [start 00:00, the day after end 00:00) in the zone, in UTC."""
    zone = ZoneInfo(timezone)
    first = datetime.combine(start, time.min, tzinfo=zone)
    after = datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone)
    return first.astimezone(UTC), after.astimezone(UTC)


def months(start: date, end: date) -> list[str]:
    """Every month touched by [start, end], as YYYY-MM."""
    keys = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        keys.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return keys


def median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def response_hours(offer: Offer) -> float | None:
    """Hours from an offer to the provider's answer, net of the time the referrer owed information."""
    if offer.responded_at is None or offer.outcome not in ("accepted", "declined"):
        return None
    seconds = (offer.responded_at - offer.offered_at).total_seconds() - offer.paused_s
    return max(seconds, 0.0) / 3600


def outcome_of(state: str, referral: ReferralFacts | None, last_offer: Offer | None) -> str:
    """How a referral's unit of this agreement ended.

    A released unit ended at this provider: declined, expired (no answer),
    cancelled by the referrer, or rerouted elsewhere by a coordinator. A held
    unit follows the referral: its recorded outcome once closed, else its status.
    """
    if state == UsageState.RELEASED.value:
        offered = last_offer.outcome if last_offer else None
        if offered in ("declined", "expired"):
            return offered
        if referral is not None and referral.status == "cancelled":
            return "cancelled"
        return "rerouted" if offered == "withdrawn" else "released"
    if referral is None:
        return "unknown"
    return referral.outcome or referral.status


def _referral_id(entry: Usage) -> int | None:
    if entry.resource_type != REFERRAL or not entry.resource_id.isdigit():
        return None
    return int(entry.resource_id)


def aggregate(
    usage: Iterable[Usage],
    referrals: Mapping[int, ReferralFacts],
    offers: Iterable[Offer],
    answered: Iterable[Offer],
    *,
    start: date,
    end: date,
    timezone: str,
) -> Activity:
    """Count the period's ledger rows by state, service, specialty, outcome and month.

    `offers` are the offers of the referrals behind the rows under this
    agreement (the last one says how a released unit ended); `answered` are the
    offers of the period that the provider accepted or declined.
    """
    zone = ZoneInfo(timezone)
    last: dict[int, Offer] = {}
    for offer in sorted(offers, key=lambda o: o.id):
        last[offer.referral_id] = offer
    totals = Tally()
    by_service: dict[str, Tally] = {}
    by_specialty: dict[str, Tally] = {}
    by_outcome: dict[str, int] = {}
    by_month = {key: Tally() for key in months(start, end)}
    for entry in usage:
        totals.add(entry.state, entry.units)
        by_service.setdefault(entry.service, Tally()).add(entry.state, entry.units)
        specialty = entry.specialty or UNSPECIFIED
        by_specialty.setdefault(specialty, Tally()).add(entry.state, entry.units)
        month = entry.occurred_at.astimezone(zone).strftime("%Y-%m")
        if month in by_month:
            by_month[month].add(entry.state, entry.units)
        rid = _referral_id(entry)
        if rid is not None:
            key = outcome_of(entry.state, referrals.get(rid), last.get(rid))
            by_outcome[key] = by_outcome.get(key, 0) + entry.units
    hours = [h for h in (response_hours(o) for o in answered) if h is not None]
    return Activity(
        start=start,
        end=end,
        timezone=timezone,
        totals=totals,
        by_service=dict(sorted(by_service.items())),
        by_specialty=dict(sorted(by_specialty.items())),
        by_outcome=dict(sorted(by_outcome.items(), key=lambda kv: (-kv[1], kv[0]))),
        months=by_month,
        response_hours=sorted(hours),
    )


CSV_HEADER = ("dimension", "key", "state", "count")


def to_csv(activity: Activity) -> str:
    """One row per (dimension, key, state) with its count, then the median response time.

    Dimensions: total, service, specialty, month (each by ledger state), outcome
    (referrals only, no state), median_response_hours and responses.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)

    def tallies(dimension: str, table: Mapping[str, Tally]) -> None:
        for key, tally in table.items():
            for state in STATES:
                writer.writerow((dimension, key, state, getattr(tally, state)))

    tallies("total", {"all": activity.totals})
    tallies("service", activity.by_service)
    tallies("specialty", activity.by_specialty)
    for key, count in activity.by_outcome.items():
        writer.writerow(("outcome", key, "", count))
    tallies("month", activity.months)
    found = activity.median_response_hours
    writer.writerow(("median_response_hours", "", "", "" if found is None else found))
    writer.writerow(("responses", "", "", len(activity.response_hours)))
    return out.getvalue()


def _counts(tally: Tally) -> s.Counts:
    return s.Counts(
        consumed=tally.consumed,
        released=tally.released,
        reserved=tally.reserved,
        total=tally.total,
    )


def _label(dimension: str, key: str, lang: str) -> str:
    if key == UNSPECIFIED:
        return translate("report.unspecified", lang)
    table = vocab.service_kinds() if dimension == "service" else vocab.specialties()
    return table[key].label(lang) if key in table else key


def read(activity: Activity, agreement: Agreement, lang: str) -> s.ActivityRead:
    """The report as JSON, with labels in the reader's language."""
    return s.ActivityRead(
        agreement=s.AgreementRef(id=agreement.id, code=agreement.code, title=agreement.title),
        period=s.PeriodRead(start=activity.start, end=activity.end, timezone=activity.timezone),
        states={state: translate(f"report.state.{state}", lang) for state in STATES},
        totals=_counts(activity.totals),
        by_service=[
            s.Breakdown(key=k, label=_label("service", k, lang), **_counts(t).model_dump())
            for k, t in activity.by_service.items()
        ],
        by_specialty=[
            s.Breakdown(key=k, label=_label("specialty", k, lang), **_counts(t).model_dump())
            for k, t in activity.by_specialty.items()
        ],
        by_outcome=[
            s.OutcomeCount(key=k, label=translate(f"report.outcome.{k}", lang), count=n)
            for k, n in activity.by_outcome.items()
        ],
        months=[
            s.MonthCount(month=k, **_counts(t).model_dump()) for k, t in activity.months.items()
        ],
        median_response_hours=activity.median_response_hours,
        responses=len(activity.response_hours),
    )


# Over the database --------------------------------------------------------------------


async def activity(
    session: AsyncSession,
    caller: Caller,
    *,
    agreement_id: int,
    start: date | None,
    end: date | None,
    now: datetime,
) -> tuple[Agreement, Activity]:
    """The report of an agreement the caller's institution is party to (any, for the operator).

    An agreement the caller may not see is as missing as a missing one (404);
    a party's user without a reporting role is refused with its rule (403).
    Both refusals are audited; so is every report read.
    """
    everything = caller.operator and caller.has(Role.ADMIN, Role.AUDITOR)
    agreement = await registry_repo.agreement(
        session, agreement_id, visible_to=None if everything else caller.institution_id
    )
    if agreement is None:
        raise NotFound(
            f"no agreement {agreement_id}",
            refusal=audit.Refusal(
                caller.actor,
                "report.activity",
                rule="not_visible",
                resource_type="agreement",
                resource_id=agreement_id,
            ),
        )
    if not caller.has(*READERS):
        rule = "role_required"
        names = ", ".join(sorted(r.value for r in READERS))
        raise Forbidden(
            f"activity reports need one of the roles: {names}",
            rule=rule,
            refusal=audit.Refusal(
                caller.actor,
                "report.activity",
                rule=rule,
                resource_type="agreement",
                resource_id=agreement_id,
            ),
        )
    end = end or now.astimezone(ZoneInfo(agreement.timezone)).date()
    start = start or default_start(end)
    problem = period_error(start, end)
    if problem:
        raise Unprocessable(problem)
    since, until = bounds(start, end, agreement.timezone)
    usage = await repo.usage(session, agreement.id, start=since, end=until)
    ids = {rid for rid in (_referral_id(u) for u in usage) if rid is not None}
    result = aggregate(
        usage,
        await repo.referrals(session, ids),
        await repo.offers_of(session, agreement.id, ids),
        await repo.answered_offers(session, agreement.id, start=since, end=until),
        start=start,
        end=end,
        timezone=agreement.timezone,
    )
    await audit.record(
        session,
        caller.actor,
        "report.activity",
        resource_type="agreement",
        resource_id=agreement.id,
        details={"from": start.isoformat(), "to": end.isoformat()},
    )
    return agreement, result
