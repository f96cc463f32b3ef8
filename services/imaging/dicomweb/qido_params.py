"""QIDO-RS query parameters (PS3.18 §8.3.4, §10.6.1.2): what a search asks, checked before it runs.

A query key is a matching attribute, by keyword or by tag (`PatientID` or
`00100020`, as OHIF sends it), or one of `limit`, `offset`, `fuzzymatching`
and `includefield`. Each resource accepts the attributes of its own level and
of the levels above it that it spans (Table 10.6.1-2): `/studies` study keys;
`/studies/{study}/series` series keys; `/series` study and series keys; and so
on down to `/instances`, which takes all three. A value for a key this
resource does not match on, a key that names no DICOM attribute, a value that
cannot match (an impossible date, a malformed UID) or a key given twice is an
invalid query parameter: 400 with the key named (§8.3.4, §10.6.3), never a
silent empty answer.

Matching follows PS3.4 C.2.2.2: UIDs by list (`,` or `\\` between them), names,
IDs and descriptions by wildcard (`*`, `?`), `StudyDate` by range, modalities
by list. A key with an empty value is a return key (universal matching, as a
C-FIND-style client sends them), accepted for any DICOM attribute, as is
`includefield` (`all`, tags or keywords); the fixed return attributes of PS3.18
Table 10.6.3-3 to -5 are sent. `fuzzymatching=true` is answered with literal
matching and a Warning, as §8.3.4.1 allows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from pydicom.datadict import dictionary_keyword, keyword_dict

from services.imaging.stores import InstanceRef, SeriesSummary, StudySummary, part10, query
from shared.problems import BadRequest

__all__ = ["Level", "Search", "parse"]


class Level(Enum):
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


# The attributes this server matches on, by level, with how each is matched.
_UIDS, _WILDCARD, _DATE, _CODES, _NUMBER = "uids", "wildcard", "date", "codes", "number"
_KEYS: dict[Level, dict[str, str]] = {
    Level.STUDY: {
        "StudyInstanceUID": _UIDS,
        "PatientID": _WILDCARD,
        "PatientName": _WILDCARD,
        "AccessionNumber": _WILDCARD,
        "StudyDescription": _WILDCARD,
        "StudyDate": _DATE,
        "ModalitiesInStudy": _CODES,
    },
    Level.SERIES: {
        "SeriesInstanceUID": _UIDS,
        "Modality": _CODES,
        "SeriesNumber": _NUMBER,
    },
    Level.INSTANCE: {
        "SOPInstanceUID": _UIDS,
        "SOPClassUID": _UIDS,
        "InstanceNumber": _NUMBER,
    },
}
_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_NUMBER_VALUE = re.compile(r"[+-]?[0-9]{1,11}")
MAX_VALUE = 256
"""Longer than any DICOM value a matching key can hold (LO is 64 characters; a UID list more)."""


@dataclass(frozen=True)
class Search:
    """One QIDO-RS query: matching keys by keyword (values checked), paging, fuzzy matching asked."""

    keys: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False

    def get(self, keyword: str) -> str | None:
        return self.keys.get(keyword) or None

    def uids(self, keyword: str) -> frozenset[str] | None:
        """A UID list key's UIDs; None when not given (universal matching)."""
        value = self.get(keyword)
        return frozenset(_values(value)) if value else None

    def single(self, keyword: str) -> str | None:
        """The value when it is one value (no list), for a store's own filter; else None."""
        items = _values(self.get(keyword) or "")
        return items[0] if len(items) == 1 else None

    def matches_study(self, study: StudySummary) -> bool:
        return (
            _in(self.uids("StudyInstanceUID"), study.study_uid)
            and _like(self.get("PatientID"), study.patient_id)
            and _like(self.get("PatientName"), study.patient_name)
            and _like(self.get("AccessionNumber"), study.accession_number)
            and _like(self.get("StudyDescription"), study.study_description)
            and _dated(self.get("StudyDate"), study.study_date)
            and _any_code(self.get("ModalitiesInStudy"), study.modalities)
        )

    def matches_series(self, series: SeriesSummary) -> bool:
        return (
            _in(self.uids("SeriesInstanceUID"), series.series_uid)
            and _any_code(self.get("Modality"), (series.modality,))
            and _numbered(self.get("SeriesNumber"), series.series_number)
        )

    def matches_instance(self, instance: InstanceRef) -> bool:
        return (
            _in(self.uids("SOPInstanceUID"), instance.sop_instance_uid)
            and _in(self.uids("SOPClassUID"), instance.sop_class_uid)
            and _numbered(self.get("InstanceNumber"), instance.instance_number)
        )

    def asks(self, level: Level) -> bool:
        """Whether any key of `level` narrows the search."""
        return any(self.keys.get(keyword) for keyword in _KEYS[level])


def parse(items: Iterable[tuple[str, str]], levels: Iterable[Level]) -> Search:
    """The query string's `(key, value)` pairs as a `Search` over `levels`; BadRequest if invalid."""
    allowed = {keyword: how for level in levels for keyword, how in _KEYS[level].items()}
    keys: dict[str, str] = {}
    paging: dict[str, str] = {}
    for raw_key, value in items:
        if raw_key == "includefield":
            _check_fields(value)
            continue
        if raw_key in ("limit", "offset", "fuzzymatching"):
            if raw_key in paging:
                raise BadRequest(
                    f"the query parameter {raw_key!r} is given twice", parameter=raw_key
                )
            paging[raw_key] = value
            continue
        keyword = _keyword(raw_key)
        if not value.strip() and _is_attribute(raw_key):
            continue  # a return key (C-FIND style, or `?00080060`): universal matching
        if keyword not in allowed:
            raise BadRequest(
                f"the query parameter {raw_key[:64]!r} is not a matching attribute of this"
                f" resource; it matches on {', '.join(sorted(allowed))}",
                parameter=raw_key[:64],
            )
        if keyword in keys:
            raise BadRequest(f"the query parameter {raw_key!r} is given twice", parameter=raw_key)
        _check_value(raw_key, allowed[keyword], value)
        keys[keyword] = value.strip()
    return Search(
        keys=keys,
        limit=_count(paging, "limit"),
        offset=_count(paging, "offset") or 0,
        fuzzy=_flag(paging, "fuzzymatching"),
    )


def _values(value: str) -> list[str]:
    """A list value's items: `\\` separates them in DICOM (OHIF sends it), `,` in PS3.18 URLs."""
    return [item.strip() for item in re.split(r"[\\,]", value) if item.strip()]


def _keyword(key: str) -> str:
    """`PatientID` as itself, `00100020` as `PatientID`; anything else as given."""
    if _TAG.fullmatch(key):
        try:
            return str(dictionary_keyword(int(key, 16)))
        except KeyError:
            return key
    return key


def _check_value(key: str, how: str, value: str) -> None:
    def refuse(why: str) -> BadRequest:
        return BadRequest(f"the query parameter {key!r} {why}: {value[:64]!r}", parameter=key)

    if len(value) > MAX_VALUE:
        raise refuse(f"is longer than {MAX_VALUE} characters")
    value = value.strip()
    if not value:
        return
    if how == _UIDS and not all(part10.is_uid(uid) for uid in _values(value)):
        raise refuse("is not a UID or a list of UIDs (separated by ',' or '\\')")
    if how == _DATE:
        try:
            query.date_range(value)
        except ValueError as exc:
            raise refuse("is not a date (YYYYMMDD) or a date range (A-B, A-, -B)") from exc
    if how == _NUMBER and not _NUMBER_VALUE.fullmatch(value):
        raise refuse("is not an integer")


def _is_attribute(name: str) -> bool:
    """A tag or keyword, or a path of them into a sequence (`00400275.00400009`)."""
    return all(_TAG.fullmatch(part) or part in keyword_dict for part in name.split("."))


def _check_fields(value: str) -> None:
    """`all`, or a comma-separated list of attributes."""
    for name in value.split(","):
        name = name.strip()
        if name == "all" or _is_attribute(name):
            continue
        raise BadRequest(
            f"the query parameter 'includefield' names no DICOM attribute: {name[:64]!r}",
            parameter="includefield",
        )


def _count(paging: dict[str, str], key: str) -> int | None:
    value = paging.get(key)
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 9:
        raise BadRequest(
            f"the query parameter {key!r} is not a count (0 or more): {value[:64]!r}",
            parameter=key,
        )
    return int(value)


def _flag(paging: dict[str, str], key: str) -> bool:
    value = paging.get(key, "false").lower()
    if value not in ("true", "false"):
        raise BadRequest(
            f"the query parameter {key!r} is not true or false: {value[:64]!r}", parameter=key
        )
    return value == "true"


def _in(uids: frozenset[str] | None, uid: str) -> bool:
    return uids is None or uid in uids


def _like(pattern: str | None, value: str) -> bool:
    return pattern is None or query.wildcard(pattern).fullmatch(value or "") is not None


def _dated(value: str | None, date: str) -> bool:
    if value is None:
        return True
    low, high = query.date_range(value)
    return low <= date <= high


def _any_code(value: str | None, codes: Iterable[str]) -> bool:
    if value is None:
        return True
    wanted = {code.upper() for code in _values(value)}
    return any(code.upper() in wanted for code in codes)


def _numbered(value: str | None, number: int | None) -> bool:
    return value is None or (number is not None and number == int(value))
