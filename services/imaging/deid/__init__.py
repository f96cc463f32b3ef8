"""De-identification of DICOM instances under a coverage line's data terms (PS3.15 Annex E).

Pure code over in-memory pydicom datasets: no files, database or network.

    options = Options(retain_dates_shifted=True, clean_descriptors=True)
    out = deidentify(original, key=agreement_key, pseudonym="JISR-7F3A", options=options)
    check(out, identifiers_of(original))     # raises LeakDetected: the share must not go

- `engine.deidentify`: the Basic Application Level Confidentiality Profile
  with the options of `Options`, keyed UIDs, per-patient date shift,
  pseudonym, character sets decoded, private tags dropped unless safe-listed,
  burned-in annotation refused unless allowed.
- `gate`: `identifiers_of` the originals, `scan` and `check` the outgoing.
- `profile`: PS3.15 Table E.1-1 and how options and compound actions resolve.
- `uids`, `dates`: the keyed UID and the date shift, alone.
- `bulk`: a Part 10 file read up to its pixel data, which then follows the
  cleaned header byte for byte (the share path never parses pixels).
"""

from services.imaging.deid.burned_in import check_burned_in
from services.imaging.deid.dates import shift_days
from services.imaging.deid.engine import deidentify
from services.imaging.deid.errors import (
    BurnedInAnnotationRefused,
    DeidError,
    LeakDetected,
    NestingTooDeep,
    UnusableInput,
)
from services.imaging.deid.gate import MAX_DEPTH, Hit, check, identifiers_of, scan
from services.imaging.deid.matching import IdentifierKind, Identifiers
from services.imaging.deid.options import Options, SafePrivateTag
from services.imaging.deid.profile import TABLE, Action, Rule, action_for
from services.imaging.deid.uids import remap_uid

__all__ = [
    "MAX_DEPTH",
    "TABLE",
    "Action",
    "BurnedInAnnotationRefused",
    "DeidError",
    "Hit",
    "IdentifierKind",
    "Identifiers",
    "LeakDetected",
    "NestingTooDeep",
    "Options",
    "Rule",
    "SafePrivateTag",
    "UnusableInput",
    "action_for",
    "check",
    "check_burned_in",
    "deidentify",
    "identifiers_of",
    "remap_uid",
    "scan",
    "shift_days",
]
