"""Pure rules of teleconsults: when one may be joined, what an outcome does to the quota,
how a slot reads in a time zone, and how quality samples are summarised. No I/O."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.teleconsult.sessions.models import Outcome, SessionStatus


def join_window(
    starts_at: datetime, ends_at: datetime, *, early_s: int, overrun_s: int
) -> tuple[datetime, datetime]:
    """From `early_s` before the slot to `overrun_s` after its scheduled end."""
    return starts_at - timedelta(seconds=early_s), ends_at + timedelta(seconds=overrun_s)


def join_refusal(
    now: datetime,
    *,
    status: SessionStatus,
    starts_at: datetime,
    ends_at: datetime,
    early_s: int,
    overrun_s: int,
) -> str | None:
    """The rule that refuses a join at `now`, or None when the session may be joined."""
    if status is SessionStatus.CANCELLED:
        return "session_cancelled"
    if status is SessionStatus.ENDED:
        return "session_ended"
    opens, closes = join_window(starts_at, ends_at, early_s=early_s, overrun_s=overrun_s)
    if now < opens:
        return "too_early"
    if now > closes:
        return "too_late"
    return None


class QuotaEffect(StrEnum):
    CONSUME = "consume"
    RELEASE = "release"


def quota_effect(outcome: Outcome) -> QuotaEffect:
    """A teleconsult that took place uses its unit; a no-show or a technical failure gives it back.

    The agreement counts consultations held (DESIGN: "a teleconsult held"): when the
    patient did not come, or the link failed, no consultation was given, and the
    unit returns to the quota so that the session can be held again.
    """
    return QuotaEffect.CONSUME if outcome is Outcome.COMPLETED else QuotaEffect.RELEASE


@dataclass(frozen=True, slots=True)
class LocalSlot:
    timezone: str
    starts_at: datetime
    ends_at: datetime
    utc_offset: str
    """`+01:00`, the offset at the slot's start."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, UTC when unknown (a registry row should never carry one)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_slot(starts_at: datetime, ends_at: datetime, timezone: str) -> LocalSlot:
    """The slot as the clock on the wall shows it in `timezone` (daylight saving included)."""
    tz = zone(timezone)
    start, end = starts_at.astimezone(tz), ends_at.astimezone(tz)
    offset = start.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return LocalSlot(tz.key, start, end, f"{sign}{hours:02d}:{mins:02d}")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0..100) by linear interpolation between closest ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Spread:
    median: float | None
    p95: float | None

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Spread:
        present = [v for v in values if v is not None]
        return cls(percentile(present, 50), percentile(present, 95))


def secret_hash(secret: str) -> str:
    """What is kept of a patient's one-time link secret: its SHA-256, never the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()
