"""The leak gate: nothing leaves while an original identifier is still in it.

Before a share goes out, `check(instance, identifiers)` scans every outgoing
instance for the study's original identifiers (`identifiers_of` each original
instance, merged with `|`): every element at every depth of nested sequences,
private blocks, the file meta information and the preamble; person names and
multi-valued elements value by value; bytes values (private blocks, UN,
encapsulated documents) read loosely. Pixel data and other bulk image data are
not read: burned-in text is the business of `Options.allow_burned_in`.

A hit names where it was found, as a tag path such as
``(0040,A730)[0].(0040,A160)``, and which kind of identifier it is; never the
identifier, which must not reach logs. The rules for what counts as found are
those of `matching` (the engine's Clean action uses the same).

Dates: the birth date is looked for in text and in Patient's Birth Date itself,
not in other DA/DT values, where a shifted date may equal it by chance.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.charset import convert_encodings
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from services.imaging.deid.errors import LeakDetected, NestingTooDeep
from services.imaging.deid.matching import (
    MIN_ID_LENGTH,
    IdentifierKind,
    Identifiers,
    Matcher,
    loose_texts,
    matcher_for,
    normalize,
    words,
)
from services.imaging.deid.uids import DEVICE_UID_TAGS, is_remappable

__all__ = ["MAX_DEPTH", "Hit", "check", "identifiers_of", "scan", "tag_path"]

MAX_DEPTH = 64  # sequence nesting; pydicom itself fails near 250 with a RecursionError

PATIENT_BIRTH_DATE = 0x00100030
_IDENTIFYING_VRS = frozenset({"CS", "LO", "PN", "SH", "UI"})
_DECODE_TO_KNOW = frozenset({"SQ", "UN"})  # walked into, or replaced by the dictionary's VR
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})
# What `_scan_element` reads: an element of another VR (numbers, ages, times, tags) is
# passed without being decoded; it is still visited, and sequences are walked.
_SCANNED_VRS = _TEXT_VRS | _BYTES_VRS | {"UI", "DA", "DT"}
# Bulk image data, read by nobody here: pixels, overlays, waveforms, LUTs, ICC profiles.
_BULK_TAGS = frozenset(
    {
        0x00282000,  # ICC Profile
        0x00281201,
        0x00281202,
        0x00281203,
        0x00281204,  # palette LUT data
        0x00281221,
        0x00281222,
        0x00281223,  # segmented palette LUT data
        0x00283006,  # LUT Data
        0x54001010,  # Waveform Data
        0x56000020,  # Spectroscopy Data
        0x7FE00001,
        0x7FE00002,  # extended offset table and lengths
        0x7FE00008,
        0x7FE00009,
        0x7FE00010,  # float, double and pixel data
    }
)


@dataclass(frozen=True, slots=True)
class Hit:
    """An original identifier found at `path` (a tag path), of kind `kind`."""

    path: str
    kind: IdentifierKind
    keyword: str = ""


def tag_path(prefix: str, tag: int) -> str:
    """``prefix`` followed by ``(GGGG,EEEE)``, the way hits and errors name an element."""
    return f"{prefix}({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _values(value: object) -> list[object]:
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [value]


def _walk(
    ds: Dataset,
    prefix: str = "",
    depth: int = 0,
    *,
    private: bool = True,
    only: frozenset[str] | None = None,
) -> Iterator[tuple[str, DataElement]]:
    """Every element of `ds` and of its nested items, with the tag path of its dataset.

    With `private` False, private elements are skipped without being decoded;
    with `only`, so are elements whose VR, as read from the file, is another one
    (sequences are still walked, and an element of unknown or UN VR is decoded
    to learn it).
    """
    if depth > MAX_DEPTH:
        raise NestingTooDeep(prefix.rstrip(".") or "(top)", MAX_DEPTH)
    for tag in sorted(ds.keys(), key=int):
        if not private and tag >> 16 & 1:
            continue
        if only is not None:
            raw_vr = ds.get_item(tag).VR  # a raw element until decoded: no value conversion
            if raw_vr is not None and raw_vr not in only and raw_vr not in _DECODE_TO_KNOW:
                continue
        elem = ds[tag]
        yield prefix, elem
        if elem.VR == "SQ" and elem.value:
            path = tag_path(prefix, tag)
            for index, item in enumerate(elem.value):
                yield from _walk(item, f"{path}[{index}].", depth + 1, private=private, only=only)


def identifiers_of(ds: Dataset) -> Identifiers:
    """The original identifiers of one instance, to scan its study's outgoing instances for.

    Name words (family, given and middle names of Patient's Name in each of
    its alphabetic, ideographic and phonetic groups, of Other Patient Names and
    Patient's Birth Name; at least 2 characters; prefixes and suffixes such as
    "Mr" or "Jr" are not identifying and are left out), Patient ID, Other
    Patient IDs (and the sequence), every Accession Number, the birth date, and
    every instance UID anywhere in the dataset or its file meta (the UIDs the
    engine replaces). Private elements are not read for identifiers (their
    meaning is the vendor's; the engine drops them unless safe-listed, and the
    scan still reads them). IDs shorter than 3 characters are not looked for:
    they would match ordinary numbers.
    """
    names: set[str] = set()
    patient_ids: set[str] = set()
    other_ids: set[str] = set()
    accessions: set[str] = set()
    uids: set[str] = set()
    charsets: set[str] = set()

    def ident(value: object) -> str | None:
        text = normalize(str(value).strip())
        return text if len(text) >= MIN_ID_LENGTH else None

    def person(value: object) -> None:
        name = value if isinstance(value, PersonName) else PersonName(str(value))
        for group in (name.alphabetic, name.ideographic, name.phonetic):
            for part in group.split("^")[:3]:
                names.update(words(part))

    meta = getattr(ds, "file_meta", None)
    # Only the VRs that can hold these identifiers are decoded: pixel data and the
    # rest are skipped as read, which is most of the time this function used to take.
    elements = list(_walk(ds, private=False, only=_IDENTIFYING_VRS))
    if meta is not None:
        elements += list(_walk(meta, only=_IDENTIFYING_VRS))
    for prefix, elem in elements:
        tag, vr, value = int(elem.tag), elem.VR, elem.value  # int: BaseTag's == is slow
        if vr not in _IDENTIFYING_VRS or value is None or value == "":
            continue
        if tag == 0x00080005:
            charsets.update(convert_encodings(value))
        elif tag in (0x00100010, 0x00101001, 0x00101005):  # name, other names, birth name
            for one in _values(value):
                person(one)
        elif tag == 0x00100020:  # nested: Other Patient IDs Sequence and the like
            found = filter(None, map(ident, _values(value)))
            (other_ids if prefix else patient_ids).update(found)
        elif tag == 0x00101000:  # Other Patient IDs (retired, still met)
            other_ids.update(filter(None, map(ident, _values(value))))
        elif tag == 0x00080050:
            accessions.update(filter(None, map(ident, _values(value))))
        elif vr == "UI" and tag not in DEVICE_UID_TAGS:
            uids.update(
                str(uid).strip()
                for uid in _values(value)
                if is_remappable(tag, str(uid)) and "." in str(uid)  # not dummies like "0"
            )
    birth = str(ds.get("PatientBirthDate") or "").strip()
    other_ids -= patient_ids
    return Identifiers(
        names=frozenset(names),
        patient_ids=frozenset(patient_ids),
        other_patient_ids=frozenset(other_ids),
        accession_numbers=frozenset(accessions),
        birth_dates=frozenset({birth} if birth else set()),
        uids=frozenset(uids),
        encodings=frozenset(charsets - {"iso8859", "latin_1", "iso-8859-1"}),
    )


def _scan_element(
    elem: DataElement, identifiers: Identifiers, matcher: Matcher
) -> set[IdentifierKind]:
    vr, value, found = elem.VR, elem.value, set[IdentifierKind]()
    if value is None or value == "" or vr == "SQ":
        return found
    if vr == "UI":
        if any(str(uid).strip() in identifiers.uids for uid in _values(value)):
            found.add(IdentifierKind.UID)
    elif vr in _TEXT_VRS:
        for one in _values(value):
            found |= matcher.kinds_in(str(one))
    elif vr in ("DA", "DT") and int(elem.tag) == PATIENT_BIRTH_DATE:
        if any(str(day).strip()[:8] in identifiers.birth_dates for day in _values(value)):
            found.add(IdentifierKind.BIRTH_DATE)
    elif vr in _BYTES_VRS and isinstance(value, bytes):
        tag = int(elem.tag)
        if tag in _BULK_TAGS or (tag >> 16) & 0xFF01 in (0x6000, 0x5000):
            return found  # pixels, overlay bitmaps, curves
        for text in loose_texts(value, identifiers.encodings):
            found |= matcher.kinds_in(text)
    return found


def scan(ds: Dataset, identifiers: Identifiers) -> list[Hit]:
    """Every place in `ds` (file meta, preamble and nested items included) an identifier is."""
    hits: list[Hit] = []
    matcher = matcher_for(identifiers)
    preamble = getattr(ds, "preamble", None)
    if isinstance(preamble, bytes) and preamble.strip(b"\x00"):
        for text in loose_texts(preamble, identifiers.encodings):
            hits += [Hit("preamble", kind) for kind in matcher.kinds_in(text)]
    sources = [ds]
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        sources.insert(0, meta)
    for source in sources:
        for prefix, elem in _walk(source, only=_SCANNED_VRS):
            for kind in sorted(_scan_element(elem, identifiers, matcher)):
                keyword = "" if elem.tag.is_private else keyword_for_tag(elem.tag)
                hits.append(Hit(tag_path(prefix, elem.tag), kind, keyword))
    return list(dict.fromkeys(hits))


def check(ds: Dataset, identifiers: Identifiers) -> None:
    """Raise `LeakDetected` with every hit if any original identifier is in `ds`."""
    hits = scan(ds, identifiers)
    if hits:
        raise LeakDetected(hits)
