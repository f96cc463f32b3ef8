"""`deidentify()`: one instance through the PS3.15 Annex E profile, in memory.

The Basic Application Level Confidentiality Profile (PS3.15 E.1.1, E.2) with
the options of `Options` (E.3.5 to E.3.8, E.3.10), applied to every element at
every depth of nested sequences, as `profile` resolves Table E.1-1. What the
engine adds to the table, and why:

- Patient's Name and Patient ID (top level) become the agreement's pseudonym
  (allowed by Z and D), so every instance of one patient stays together.
- Every UI value that names an instance is replaced by its keyed UID
  (`uids.remap_uid`), listed in the table or not, so no reference breaks and
  no original UID survives; registry UIDs and class UIDs are kept.
- Dates the table does not list are treated as the table's dates: shifted
  with Retain Longitudinal Temporal Information with Modified Dates, emptied
  without it. Person names it does not list are emptied.
- Text that is kept (K, C, or not listed) has the study's identifiers removed
  from it (`matching.Matcher.clean`); this is the Clean action of E.3.5, and
  for kept attributes a safety net the gate then confirms.
- Private attributes are removed (E.1.1: X) unless their (creator, element)
  is on the line's safe list (E.3.10); a kept one keeps its creator element.
- Curve (50xx) and overlay (60xx) groups are removed whole (Table E.1-1 rows
  50xx,xxxx and 60xx,3000/4000: X), and so are public attributes the
  dictionary does not know, group lengths, command elements, and the
  original de-identification attributes, replaced by the engine's own.
- The file meta information is written anew (keyed Media Storage SOP Instance
  UID, same transfer syntax, pydicom as the implementation) and the 128-byte
  preamble zeroed: neither may carry anything of the original.
- Text is decoded with the original Specific Character Set (ISO_IR 127
  Arabic, ISO 2022 escapes, UTF-8...) before it is cleaned, and written back
  as UTF-8: Specific Character Set becomes ISO_IR 192 and is removed from
  nested items.

Pixel data is neither decoded nor copied: the new dataset shares the bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pydicom
from pydicom import config
from pydicom.datadict import dictionary_has_tag
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from services.imaging.deid.burned_in import check_burned_in
from services.imaging.deid.dates import shift_da, shift_days, shift_dt
from services.imaging.deid.errors import DeidError, NestingTooDeep, UnusableInput
from services.imaging.deid.gate import MAX_DEPTH, identifiers_of, tag_path
from services.imaging.deid.matching import Identifiers, Matcher, matcher_for
from services.imaging.deid.options import Options
from services.imaging.deid.profile import Action, action_for, method_codes
from services.imaging.deid.uids import is_remappable, remap_uid

__all__ = ["MIN_KEY_BYTES", "deidentify"]

MIN_KEY_BYTES = 16
DUMMY_TEXT = "ANONYMIZED"
_DUMMIES: dict[str, object] = {
    "AS": "000Y",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "SV": 0,
    "UL": 0,
    "US": 0,
    "UV": 0,
}
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})
_SPECIFIC_CHARACTER_SET = 0x00080005
_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
# Written by the engine itself at the top level; never copied from the input.
_ENGINE_OWNED = frozenset(
    {
        _SPECIFIC_CHARACTER_SET,
        0x00120062,  # Patient Identity Removed
        0x00120063,  # De-identification Method
        0x00120064,  # De-identification Method Code Sequence
        0x00280303,  # Longitudinal Temporal Information Modified
    }
)


@dataclass(frozen=True, slots=True)
class _Context:
    key: bytes
    options: Options
    matcher: Matcher
    shift: int


def _values(value: object) -> list[object]:
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [value]


def _one_or_many(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def _element(
    tag: BaseTag, vr: str, value: object, *, like: DataElement | None = None
) -> DataElement:
    return DataElement(
        tag,
        vr,
        value,
        is_undefined_length=like.is_undefined_length if like is not None else False,
        validation_mode=config.IGNORE,
    )


def _uid(elem: DataElement, ctx: _Context) -> DataElement:
    values = [
        remap_uid(str(v), ctx.key) if is_remappable(elem.tag, str(v)) else str(v).strip()
        for v in _values(elem.value)
        if v is not None
    ]
    return _element(elem.tag, "UI", _one_or_many(values) if values else "")


def _text(elem: DataElement, ctx: _Context) -> DataElement:
    values = [ctx.matcher.clean(str(v)) for v in _values(elem.value) if v is not None]
    return _element(elem.tag, elem.VR, _one_or_many(values) if values else "")


def _date(elem: DataElement, ctx: _Context) -> DataElement:
    shift: Callable[[str, int], str | None] = shift_da if elem.VR == "DA" else shift_dt
    shifted = [shift(str(v), ctx.shift) for v in _values(elem.value) if v is not None]
    if any(value is None for value in shifted):
        return _element(elem.tag, elem.VR, "")  # not a date we can move: never pass it as is
    return _element(elem.tag, elem.VR, _one_or_many([v for v in shifted if v is not None]))


def _copy(elem: DataElement) -> DataElement:
    value = elem.value
    if isinstance(value, MultiValue | list):
        return _element(elem.tag, elem.VR, list(value), like=elem)
    # str, numbers, bytes (pixel data shared, not copied): immutable
    return DataElement(
        elem.tag,
        elem.VR,
        value,
        is_undefined_length=elem.is_undefined_length,
        already_converted=True,
        validation_mode=config.IGNORE,
    )


def _sequence(elem: DataElement, ctx: _Context, prefix: str, depth: int) -> DataElement:
    path = tag_path(prefix, elem.tag)
    items = [
        _walk(item, ctx, f"{path}[{index}].", depth + 1)
        for index, item in enumerate(elem.value or [])
    ]
    return DataElement(
        elem.tag, "SQ", Sequence(items), is_undefined_length=elem.is_undefined_length
    )


def _default(elem: DataElement, options: Options) -> Action:
    """The action for an attribute Table E.1-1 does not list (see the module docstring)."""
    vr = elem.VR
    if vr == "UI":
        return Action.REPLACE_UID
    if vr in ("DA", "DT"):
        return Action.CLEAN if options.retain_dates_shifted else Action.EMPTY
    if vr == "PN":
        return Action.EMPTY
    return Action.KEEP


def _apply(
    action: Action, elem: DataElement, ctx: _Context, prefix: str, depth: int
) -> DataElement | None:
    """One element after `action` (PS3.15 E.1.1), or None if it is removed."""
    tag, vr = elem.tag, elem.VR
    if action is Action.REMOVE:
        return None
    if vr == "SQ":
        if action is Action.EMPTY:
            return DataElement(tag, "SQ", Sequence())
        return _sequence(elem, ctx, prefix, depth)  # D, K, C, U: keep the items, cleaned
    if vr == "UI" and action not in (Action.EMPTY, Action.KEEP):
        return _uid(elem, ctx)  # U, and D or C, which for a UID can only mean U
    if action is Action.EMPTY:
        return _element(tag, vr, empty_value_for_VR(vr))
    if action is Action.DUMMY:
        if vr in _BYTES_VRS:
            return _element(tag, vr, b"\x00\x00")
        return _element(tag, vr, _DUMMIES.get(vr, DUMMY_TEXT))
    if vr in ("DA", "DT"):
        if action is Action.KEEP:
            return _copy(elem)
        return _date(elem, ctx) if ctx.options.retain_dates_shifted else None
    if vr in _TEXT_VRS:
        return _text(elem, ctx)  # K and C alike: the study's identifiers never stay
    if vr in _BYTES_VRS and action is Action.CLEAN:
        return None  # bytes cannot be cleaned
    return _copy(elem)


def _safe_private(
    tag: BaseTag, src: Dataset, creators: dict[int, DataElement], out: Dataset, ctx: _Context
) -> DataElement | None:
    """A private element if the line lists it as safe (PS3.15 E.3.10), else None (E.1.1: X).

    Decided on the tag and its creator alone: a dropped element is never decoded.
    """
    group, element = tag >> 16, tag & 0xFFFF
    if 0x10 <= element <= 0xFF:
        creators[(group << 8) | element] = src[tag]
        return None
    creator = creators.get((group << 8) | (element >> 8))
    if creator is None or not ctx.options.is_safe_private(str(creator.value), tag):
        return None
    if creator.tag not in out:
        out.add(_copy(creator))
    return src[tag]


def _dropped(tag: int) -> bool:
    """Public elements removed before the table is read (see the module docstring)."""
    group, element = tag >> 16, tag & 0xFFFF
    return (
        element == 0
        or group in (0x0000, 0x0002)
        or group & 0xFF00 in (0x5000, 0x6000)
        or tag in _ENGINE_OWNED
        or not dictionary_has_tag(tag)
    )


def _walk(src: Dataset, ctx: _Context, prefix: str, depth: int) -> Dataset:
    """A new dataset: `src` through the profile, nested items included."""
    if depth > MAX_DEPTH:
        raise NestingTooDeep(prefix.rstrip(".") or "(top)", MAX_DEPTH)
    out = Dataset()
    creators: dict[int, DataElement] = {}
    for tag in sorted(src.keys(), key=int):  # int: BaseTag compares slowly
        elem: DataElement | None
        if tag >> 16 & 1:
            elem = _safe_private(tag, src, creators, out, ctx)
            action = None
        else:
            elem = None if _dropped(int(tag)) else src[tag]
            action = action_for(int(tag), ctx.options)
        if elem is None:
            continue
        new = _apply(action or _default(elem, ctx.options), elem, ctx, prefix, depth)
        if new is not None:
            out.add(new)
    return out


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        return UID(str(syntax))
    if 0x7FE00010 in ds and ds[0x7FE00010].is_undefined_length:
        raise UnusableInput("encapsulated pixel data with no transfer syntax to say how")
    implicit, little = ds.original_encoding
    if implicit is not None and little is not None:
        if implicit:
            return ImplicitVRLittleEndian
        return ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    return ExplicitVRLittleEndian


def _file_meta(out: Dataset, syntax: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = out.SOPClassUID
    meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    return meta


def _mark(out: Dataset, options: Options, pseudonym: str) -> None:
    """Pseudonym, character set and the de-identification attributes (PS3.15 E.1.1, PS3.3 C.7.1.1)."""
    out.add(_element(BaseTag(_PATIENT_NAME), "PN", pseudonym))
    out.add(_element(BaseTag(_PATIENT_ID), "LO", pseudonym))
    out.SpecificCharacterSet = "ISO_IR 192"
    out.PatientIdentityRemoved = "YES"
    codes = method_codes(options)
    out.DeidentificationMethod = [meaning for _, meaning in codes]
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    out.DeidentificationMethodCodeSequence = items
    out.LongitudinalTemporalInformationModified = (
        "MODIFIED" if options.retain_dates_shifted else "REMOVED"
    )


def _check_arguments(key: bytes, pseudonym: str) -> None:
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the agreement key must be at least {MIN_KEY_BYTES} bytes")
    text = pseudonym.strip()
    if not text or text != pseudonym or len(text) > 64:
        raise ValueError("the pseudonym must be 1 to 64 characters with no padding")
    if any(char in "\\^=" or not char.isprintable() for char in text):
        raise ValueError("the pseudonym must be printable, without \\, ^ or =")


def deidentify(
    ds: Dataset,
    *,
    key: bytes,
    pseudonym: str,
    options: Options,
    identifiers: Identifiers | None = None,
    own: Identifiers | None = None,
) -> Dataset:
    """A new, de-identified copy of `ds`; `ds` itself is left as it was.

    `key` is the agreement's secret (UIDs and the date shift derive from it;
    the shift from the original Patient ID, or from the pseudonym when there
    is none), `pseudonym` the patient's pseudonym under the agreement,
    `options` the coverage line's data terms. `identifiers` (the study's, merged over its
    instances) widens what the Clean action removes beyond this instance's own;
    `own` is `identifiers_of(ds)` when the caller has read it already (read here otherwise).

    Raises `BurnedInAnnotationRefused` (see `check_burned_in`), `UnusableInput`
    (no SOP Class or Instance UID, values pydicom cannot decode, nesting deeper
    than `gate.MAX_DEPTH`), and `ValueError` for a short key or a bad pseudonym.
    The caller must still pass the result through `gate.check` before it leaves.
    """
    _check_arguments(key, pseudonym)
    check_burned_in(ds, options)
    try:
        if not ds.get("SOPClassUID") or not ds.get("SOPInstanceUID"):
            raise UnusableInput("no SOP Class UID or SOP Instance UID")
        syntax = _transfer_syntax(ds)
        own = own if own is not None else identifiers_of(ds)
        patient_id = str(ds.get("PatientID") or "").strip() or pseudonym
        ctx = _Context(
            key=key,
            options=options,
            matcher=matcher_for(own | identifiers if identifiers is not None else own),
            shift=shift_days(key, patient_id),
        )
        out = _walk(ds, ctx, "", 0)
    except DeidError:
        raise
    except (ValueError, TypeError, LookupError) as exc:
        raise UnusableInput(f"the dataset cannot be read: {type(exc).__name__}: {exc}") from exc
    _mark(out, options, pseudonym)
    out.file_meta = _file_meta(out, syntax)
    out.preamble = b"\x00" * 128
    return out
