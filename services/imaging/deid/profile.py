"""The Basic Application Level Confidentiality Profile and its options, as actions.

PS3.15 Annex E, Table E.1-1 (2024b, all 617 rows with a fixed tag, in
`table.ROWS`): for each attribute, the action of the Basic Profile and of the
options a coverage line may select (`Options`). Actions (PS3.15 E.1.1):

    D  replace with a non-zero length dummy value consistent with the VR
    Z  replace with a zero length value (or a dummy)
    X  remove
    K  keep (sequences: clean their items)
    C  clean: keep the value with identifying information removed; for dates
       under Retain Longitudinal Temporal Information with Modified Dates,
       shift them
    U  replace UIDs with non-identifying ones, consistently within the set

Compound actions mean "the first, unless the next is needed for the IOD to
stay conformant". The engine does not track each IOD's module types, so it
resolves them once, here: ``X/Z`` to Z (a Type 2 attribute stays present),
``X/D`` to X, ``Z/D`` to Z, ``X/Z/D`` to Z, ``X/Z/U*`` to U (the reference
sequence stays, its UIDs replaced, so references survive consistently).

Options override the Basic Profile where their column has an action. Where
two selected options disagree (only the device calibration and manufacture
dates: Retain Device Identity says K, Retain Longitudinal with Modified Dates
says C), C wins: dates stay shifted like every other date of the patient.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from services.imaging.deid.options import Options
from services.imaging.deid.table import ROWS

__all__ = ["TABLE", "Action", "Rule", "action_for", "method_codes"]


class Action(StrEnum):
    """A PS3.15 E.1.1 action, resolved to one letter."""

    DUMMY = "D"
    EMPTY = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    REPLACE_UID = "U"


_COMPOUND: Mapping[str, Action] = {
    "X/Z": Action.EMPTY,
    "X/D": Action.REMOVE,
    "Z/D": Action.EMPTY,
    "X/Z/D": Action.EMPTY,
    "X/Z/U*": Action.REPLACE_UID,
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of Table E.1-1: the Basic Profile action and the four options' actions."""

    tag: int
    keyword: str
    basic: str
    retain_dates_shifted: str = ""
    retain_patient_characteristics: str = ""
    retain_device_identity: str = ""
    clean_descriptors: str = ""

    def resolve(self, options: Options) -> Action:
        """The action to take on this attribute under `options`."""
        chosen = {
            action
            for action, selected in (
                (self.retain_dates_shifted, options.retain_dates_shifted),
                (self.retain_patient_characteristics, options.retain_patient_characteristics),
                (self.retain_device_identity, options.retain_device_identity),
                (self.clean_descriptors, options.clean_descriptors),
            )
            if selected and action
        }
        if "C" in chosen:
            return Action.CLEAN
        if "K" in chosen:
            return Action.KEEP
        return _COMPOUND.get(self.basic) or Action(self.basic)


TABLE: Mapping[int, Rule] = {row[0]: Rule(*row) for row in ROWS}


def action_for(tag: int, options: Options) -> Action | None:
    """The Table E.1-1 action for `tag` under `options`, or None if the table does not list it."""
    rule = TABLE.get(tag)
    return None if rule is None else rule.resolve(options)


# PS3.16 CID 7050 De-identification Method, scheme DCM.
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")
RETAIN_DATES_MODIFIED = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
RETAIN_PATIENT_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")
RETAIN_DEVICE_IDENTITY = ("113109", "Retain Device Identity Option")
RETAIN_SAFE_PRIVATE = ("113111", "Retain Safe Private Option")


def method_codes(options: Options) -> list[tuple[str, str]]:
    """The CID 7050 (code value, code meaning) pairs that describe what was applied."""
    codes = [BASIC_PROFILE]
    if options.clean_descriptors:
        codes.append(CLEAN_DESCRIPTORS)
    if options.retain_dates_shifted:
        codes.append(RETAIN_DATES_MODIFIED)
    if options.retain_patient_characteristics:
        codes.append(RETAIN_PATIENT_CHARACTERISTICS)
    if options.retain_device_identity:
        codes.append(RETAIN_DEVICE_IDENTITY)
    if options.safe_private_tags:
        codes.append(RETAIN_SAFE_PRIVATE)
    return codes
