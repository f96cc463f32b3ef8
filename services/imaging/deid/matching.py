"""Finding a study's original identifiers in text, for the gate and for cleaning.

One set of rules serves both the leak gate (`gate.scan`) and the Clean action
of the engine (PS3.15 Table E.1-1 action C, E.3.5 Clean Descriptors), so what
the engine removes is exactly what the gate looks for.

Text is compared in a normal form: compatibility decomposition, combining
marks dropped (accents, Arabic harakat, hamza carriers), tatweel and
direction marks dropped, case folded. So "Jérôme" finds "JEROME", and
"بِنْعَلِي" finds "بنعلي". Then:

- ASCII name words and IDs made of letters and digits match whole runs of
  letters and digits, or the letter-only or digit-only parts of a run: "Li"
  is found in "Li^Wei", "Mr_Li" and "li2", never in "clinical"; ID "0212345"
  is found in "MRN0212345", not in "80212345". IDs that mix letters and
  digits over 6 characters or more match anywhere: "ACC2024117" is found in
  "XACC2024117".
- Non-ASCII name words (Arabic, CJK, Cyrillic...) match anywhere: Arabic
  attaches articles and prepositions, CJK writes no spaces.
- IDs with punctuation match with no letter or digit on either side.
- Birth dates match in their common renderings (19800514, 1980-05-14,
  14/05/1980, 14.05.1980, 05/14/1980 ...) with no digit on either side.
- UIDs match with no digit or dot-digit on either side.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

__all__ = [
    "MIN_ID_LENGTH",
    "MIN_NAME_LENGTH",
    "IdentifierKind",
    "Identifiers",
    "Matcher",
    "birth_date_renderings",
    "loose_texts",
    "matcher_for",
    "normalize",
    "words",
]

MIN_NAME_LENGTH = 2
MIN_ID_LENGTH = 3
MIN_GLUED_ID_LENGTH = 6

_DROPPED: dict[int, None] = {
    cp: None for cp in range(0x10000) if unicodedata.combining(chr(cp))
} | dict.fromkeys((0x0640, 0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0xFEFF))
_RUN = re.compile(r"[^\W_]+")  # letters and digits, any script
_PARTS = re.compile(r"\d+|[^\W\d_]+")  # the digit-only and letter-only parts of a run
_DATE = re.compile(r"(?<!\d)(?:\d{8}|\d{4}[-/.]\d{2}[-/.]\d{2}|\d{2}[-/.]\d{2}[-/.]\d{4})(?!\d)")
_UID = re.compile(r"(?<![\d.])\d+(?:\.\d+)+(?!\d|\.\d)")


class IdentifierKind(StrEnum):
    """What an identifier is; a gate hit names its kind, never its value."""

    NAME = "name"
    PATIENT_ID = "patient_id"
    OTHER_PATIENT_ID = "other_patient_id"
    ACCESSION_NUMBER = "accession_number"
    BIRTH_DATE = "birth_date"
    UID = "uid"


def normalize(text: str) -> str:
    """The normal form in which identifiers are compared (see the module docstring)."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKD", text).translate(_DROPPED).casefold()


def _normalize_with_map(text: str) -> tuple[str, list[int]]:
    """`normalize(text)` and, for each of its characters, the index it came from in `text`."""
    if text.isascii():
        return text.lower(), list(range(len(text)))
    out: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        piece = unicodedata.normalize("NFKD", char).translate(_DROPPED).casefold()
        out.append(piece)
        origin.extend([index] * len(piece))
    return "".join(out), origin


def words(text: str, minimum: int = MIN_NAME_LENGTH) -> set[str]:
    """The normalised runs of letters and digits of `text` at least `minimum` long."""
    return {word for word in _RUN.findall(normalize(text)) if len(word) >= minimum}


def loose_texts(data: bytes, encodings: Iterable[str] = ()) -> list[str]:
    """Readings of a bytes value good enough to look for identifiers in.

    Latin-1 (every byte a character), the same without NULs (catches UTF-16
    ASCII), UTF-8 and each of `encodings` ignoring what does not decode.
    """
    latin = data.decode("latin-1")
    texts = [latin]
    if b"\x00" in data:
        texts.append(latin.replace("\x00", ""))
    if not data.isascii():
        for codec in ("utf-8", *encodings):
            try:
                texts.append(data.decode(codec, errors="ignore"))
            except LookupError:
                continue
    return texts


def birth_date_renderings(da: str) -> set[str]:
    """How a YYYYMMDD birth date may be written in free text."""
    value = da.strip()
    if not re.fullmatch(r"\d{8}", value):
        return set()
    y, m, d = value[:4], value[4:6], value[6:]
    found = {value}
    for sep in "-/.":
        found |= {f"{y}{sep}{m}{sep}{d}", f"{d}{sep}{m}{sep}{y}", f"{m}{sep}{d}{sep}{y}"}
    return found


@dataclass(frozen=True, slots=True)
class Identifiers:
    """A study's original identifiers, normalised; `|` merges two instances' sets.

    `encodings` are the Python codecs of the original character sets, used to
    read bytes values (private blocks, UN) loosely.
    """

    names: frozenset[str] = frozenset()
    patient_ids: frozenset[str] = frozenset()
    other_patient_ids: frozenset[str] = frozenset()
    accession_numbers: frozenset[str] = frozenset()
    birth_dates: frozenset[str] = frozenset()
    uids: frozenset[str] = frozenset()
    encodings: frozenset[str] = frozenset()

    def __or__(self, other: Identifiers) -> Identifiers:
        return Identifiers(
            names=self.names | other.names,
            patient_ids=self.patient_ids | other.patient_ids,
            other_patient_ids=self.other_patient_ids | other.other_patient_ids,
            accession_numbers=self.accession_numbers | other.accession_numbers,
            birth_dates=self.birth_dates | other.birth_dates,
            uids=self.uids | other.uids,
            encodings=self.encodings | other.encodings,
        )

    def terms(self) -> Iterator[tuple[str, IdentifierKind]]:
        """Every textual identifier with its kind, most specific kinds last (they win)."""
        yield from ((name, IdentifierKind.NAME) for name in self.names)
        yield from ((i, IdentifierKind.OTHER_PATIENT_ID) for i in self.other_patient_ids)
        yield from ((i, IdentifierKind.ACCESSION_NUMBER) for i in self.accession_numbers)
        yield from ((i, IdentifierKind.PATIENT_ID) for i in self.patient_ids)


def _glued_id(term: str, kind: IdentifierKind) -> bool:
    """An ID of letters and digits mixed, long enough to be looked for glued to other text."""
    return (
        kind is not IdentifierKind.NAME
        and len(term) >= MIN_GLUED_ID_LENGTH
        and _RUN.fullmatch(term) is not None
        and not term.isdigit()
        and not term.isalpha()
    )


class Matcher:
    """The compiled form of one `Identifiers`: finds them in text."""

    def __init__(self, identifiers: Identifiers) -> None:
        self.identifiers = identifiers
        self._tokens: dict[str, IdentifierKind] = {}
        self._anywhere: dict[str, IdentifierKind] = {}
        bounded: dict[str, IdentifierKind] = {}
        for term, kind in identifiers.terms():
            if not term.isascii() or _glued_id(term, kind):
                self._anywhere[term] = kind
            elif _RUN.fullmatch(term):
                self._tokens[term] = kind
            else:
                bounded[term] = kind
        self._bounded = bounded
        self._bounded_re = (
            re.compile(
                r"(?<![^\W_])(?:"
                + "|".join(re.escape(t) for t in sorted(bounded, key=len, reverse=True))
                + r")(?![^\W_])"
            )
            if bounded
            else None
        )
        self._dates = {
            rendering for da in identifiers.birth_dates for rendering in birth_date_renderings(da)
        }
        self._uids = identifiers.uids

    def find(self, norm: str) -> Iterator[tuple[int, int, IdentifierKind]]:
        """Spans (start, end, kind) of identifiers in normalised text `norm`."""
        tokens = self._tokens
        if tokens:
            for run in _RUN.finditer(norm):
                kind = tokens.get(run.group())
                if kind is not None:
                    yield run.start(), run.end(), kind
                    continue
                if run.group().isalpha() or run.group().isdigit():
                    continue
                for part in _PARTS.finditer(run.group()):
                    kind = tokens.get(part.group())
                    if kind is not None:
                        yield run.start() + part.start(), run.start() + part.end(), kind
        for term, kind in self._anywhere.items():
            start = norm.find(term)
            while start >= 0:
                yield start, start + len(term), kind
                start = norm.find(term, start + 1)
        if self._bounded_re is not None:
            for match in self._bounded_re.finditer(norm):
                yield match.start(), match.end(), self._bounded[match.group()]
        if self._dates:
            for match in _DATE.finditer(norm):
                if match.group() in self._dates:
                    yield match.start(), match.end(), IdentifierKind.BIRTH_DATE
        if self._uids and "." in norm:
            for match in _UID.finditer(norm):
                if match.group() in self._uids:
                    yield match.start(), match.end(), IdentifierKind.UID

    def kinds_in(self, text: str) -> set[IdentifierKind]:
        """The kinds of identifier found in `text`."""
        return {kind for _, _, kind in self.find(normalize(text))}

    def clean(self, text: str) -> str:
        """`text` with every identifier found in it removed and the spaces tidied."""
        norm = normalize(text)
        if next(self.find(norm), None) is None:
            return text
        norm, origin = _normalize_with_map(text)
        drop = bytearray(len(text))
        for start, end, _ in self.find(norm):
            for index in range(origin[start], origin[end - 1] + 1):
                drop[index] = 1
        kept = "".join(char for char, gone in zip(text, drop, strict=True) if not gone)
        return re.sub(r"\s{2,}", " ", kept).strip()


@lru_cache(maxsize=32)
def matcher_for(identifiers: Identifiers) -> Matcher:
    """The (cached) `Matcher` of `identifiers`."""
    return Matcher(identifiers)
