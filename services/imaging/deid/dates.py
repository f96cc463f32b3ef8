"""Per-patient date shifting for Retain Longitudinal Temporal Information with
Modified Dates (PS3.15 E.3.6, Table E.1-1 option action C on DA and DT).

Every date of one patient moves back by the same whole number of days,
`shift_days(key, patient_id)` in -365..-1, derived from HMAC-SHA256 under the
agreement's key: intervals between dates are kept exactly, times of day (TM,
and the time part of DT, with its UTC offset) are unchanged, the same patient
gets the same shift each time a study is shared under one agreement, and no
table of shifts is stored.

Values that are not dates the engine can read give None: the engine then
empties them rather than let an unshifted date through.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date, timedelta

__all__ = ["MAX_SHIFT_DAYS", "shift_da", "shift_days", "shift_dt"]

MAX_SHIFT_DAYS = 365
_DATE_SHIFT_CONTEXT = b"jisr/deid/date-shift\x00"
_DA = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")  # YYYYMMDD, and ACR-NEMA YYYY.MM.DD
_DT = re.compile(r"(\d{4})(\d{2})?(\d{2})?(.*)", re.DOTALL)
_TIME = re.compile(r"(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?([+-]\d{4})?")
_OFFSET = re.compile(r"[+-]\d{4}")


def shift_days(key: bytes, patient_id: str) -> int:
    """The number of days (-365..-1) by which every date of this patient moves."""
    digest = hmac.new(key, _DATE_SHIFT_CONTEXT + patient_id.encode(), hashlib.sha256).digest()
    return -(1 + int.from_bytes(digest[:8], "big") % MAX_SHIFT_DAYS)


def _moved(year: int, month: int, day: int, days: int) -> date | None:
    try:
        return date(year, month, day) + timedelta(days=days)
    except (ValueError, OverflowError):
        return None


def _yyyymmdd(day: date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def shift_da(value: str, days: int) -> str | None:
    """A DA value moved by `days`, as YYYYMMDD; "" stays ""; None if it is not a date."""
    text = value.strip()
    if not text:
        return ""
    match = _DA.fullmatch(text)
    if match is None:
        return None
    moved = _moved(int(match[1]), int(match[2]), int(match[3]), days)
    return None if moved is None else _yyyymmdd(moved)


def shift_dt(value: str, days: int) -> str | None:
    """A DT value with its date part moved by `days`; the time and UTC offset are kept.

    A DT of year or year-month precision moves its first day and keeps its
    precision (``2021`` moved back 10 days is ``2020``).
    """
    text = value.strip()
    if not text:
        return ""
    match = _DT.fullmatch(text)
    if match is None:
        return None
    year, month, day, rest = match[1], match[2], match[3], match[4]
    if rest and not (_OFFSET if day is None else _TIME).fullmatch(rest):
        return None
    moved = _moved(int(year), int(month or 1), int(day or 1), days)
    if moved is None:
        return None
    shifted = _yyyymmdd(moved)
    precision = 4 if month is None else 6 if day is None else 8
    return shifted[:precision] + rest
