"""Quota periods as half-open windows of local time in the agreement's zone."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.entitlements.model import Agreement, QuotaPeriod


def local_date(at: datetime, timezone: str) -> date:
    if at.tzinfo is None:
        raise ValueError("decisions need an aware datetime")
    return at.astimezone(ZoneInfo(timezone)).date()


def start_of(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(timezone))


def window(
    agreement: Agreement, period: QuotaPeriod, at: datetime
) -> tuple[datetime, datetime | None]:
    """The period containing `at`, as [start, end); end None for an open-ended term."""
    tz = agreement.timezone
    day = local_date(at, tz)
    if period is QuotaPeriod.TERM:
        end = None
        if agreement.valid_until is not None:
            end = start_of(agreement.valid_until + timedelta(days=1), tz)
        return start_of(agreement.valid_from, tz), end
    if period is QuotaPeriod.MONTH:
        first = day.replace(day=1)
        nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    elif period is QuotaPeriod.QUARTER:
        first = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
        month = first.month + 3
        nxt = date(first.year + (month - 1) // 12, (month - 1) % 12 + 1, 1)
    else:
        first, nxt = date(day.year, 1, 1), date(day.year + 1, 1, 1)
    return start_of(first, tz), start_of(nxt, tz)
