"""Matching, ordering and DICOM JSON rules that both stores share, so that they answer alike."""

from __future__ import annotations

import datetime
import re
from typing import Any

from services.imaging.stores.base import InstanceRef, SeriesSummary, StudySummary

__all__ = [
    "date_range",
    "instance_order",
    "series_order",
    "study_order",
    "wildcard",
    "without_bulk_data",
]

_DATE = re.compile(r"[0-9]{8}")
# Pixel Data in its three encodings and Data Set Trailing Padding (PS3.6 §7).
_LEFT_OUT = frozenset({"7FE00008", "7FE00009", "7FE00010", "FFFCFFFC"})


def wildcard(pattern: str) -> re.Pattern[str]:
    """A DICOM wildcard (PS3.4 C.2.2.2.4: `*` any run, `?` one character), case-insensitive."""
    parts = (".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def date_range(value: str) -> tuple[str, str]:
    """`YYYYMMDD`, `A-B`, `A-` or `-B` (PS3.4 C.2.2.2.5) as inclusive bounds; ValueError if not
    (including a day no calendar has, such as 20241345)."""
    low, dash, high = value.partition("-")
    if not dash:
        high = low
    if not (low or high) or any(part and not _is_date(part) for part in (low, high)):
        raise ValueError(f"not a DICOM date or date range: {value!r:.40}")
    return low or "00000000", high or "99999999"


def _is_date(value: str) -> bool:
    if not _DATE.fullmatch(value):
        return False
    try:
        datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return False
    return True


def study_order(study: StudySummary) -> tuple[int, str]:
    """Newest first; a study without a date last."""
    return (-int(study.study_date) if _DATE.fullmatch(study.study_date) else 1, study.study_uid)


def series_order(series: SeriesSummary) -> tuple[bool, int, str]:
    return (series.series_number is None, series.series_number or 0, series.series_uid)


def instance_order(instance: InstanceRef) -> tuple[str, bool, int, str]:
    number = instance.instance_number
    return (instance.series_uid, number is None, number or 0, instance.sop_instance_uid)


def without_bulk_data(item: dict[str, Any]) -> dict[str, Any]:
    """One DICOM JSON data set with pixel data left out and binary values emptied, recursively."""
    cleaned: dict[str, Any] = {}
    for tag, element in item.items():
        if tag.upper() in _LEFT_OUT or not isinstance(element, dict):
            continue
        element = {k: v for k, v in element.items() if k not in ("BulkDataURI", "InlineBinary")}
        if element.get("vr") == "SQ" and isinstance(element.get("Value"), list):
            element["Value"] = [without_bulk_data(child) for child in element["Value"]]
        cleaned[tag.upper()] = element
    return cleaned
