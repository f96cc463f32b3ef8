"""The checks every store applies to a file before keeping it (PS3.10 §7.1, PS3.5 §7).

A file is kept only if it is a DICOM Part 10 file: 128-byte preamble, `DICM`,
file meta information, then a data set that parses to its last byte, with the
four UIDs that place it (SOP Instance, SOP Class, Study, Series). pydicom alone
accepts a file cut short (it returns the short value, or only warns), so each
top-level element is checked against its declared length, and encapsulated
pixel data must end with its Sequence Delimiter; these checks do not depend on
warning filters. A file cut exactly between two elements is complete as far as
any parser can tell; if it lost its pixel data but kept `Rows`, it is refused.

The preamble is zeroed: PS3.10 §7.1 leaves it to applications, and it can make
a file a valid executable too (CVE-2019-11687).

`read` is blocking; stores run it in a thread.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import pydicom
from pydicom import config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import data_element_generator
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from services.imaging.stores.base import StoredInstance
from services.imaging.stores.errors import NotFoundInStore, RejectedByStore

__all__ = ["PREAMBLE_LENGTH", "Part10", "check_uid", "read"]

PREAMBLE_LENGTH = 128
_PREFIX = b"DICM"
_UNDEFINED_LENGTH = 0xFFFFFFFF
_TRANSFER_SYNTAX = 0x00020010
_PIXEL_DATA = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Sequence Delimitation Item (FFFE,E0DD) with its zero length, PS3.5 §7.5.
_DELIMITER_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_DELIMITER_BE = b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"
# PS3.5 §9.1 allows digits and dots only, at most 64 characters; leading zeros
# in a component are not allowed either, but real scanners write them.
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_UID_MAX = 64


@dataclass(frozen=True, slots=True)
class Part10:
    """A checked file (preamble zeroed) and the attributes a store indexes."""

    data: bytes
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    accession_number: str
    study_description: str
    modality: str
    series_number: int | None
    series_description: str
    instance_number: int | None
    pixel_bytes: int | None
    """What the pixel data would take decoded, as Rows, Columns, Samples per Pixel, Bits
    Allocated and Number of Frames declare it; None when they do not read as numbers."""

    def stored(self, *, size: int, already_stored: bool) -> StoredInstance:
        return StoredInstance(
            study_uid=self.study_uid,
            series_uid=self.series_uid,
            sop_instance_uid=self.sop_instance_uid,
            sop_class_uid=self.sop_class_uid,
            size=size,
            already_stored=already_stored,
        )


def is_uid(value: str) -> bool:
    return len(value) <= _UID_MAX and _UID.fullmatch(value) is not None


def check_uid(uid: str) -> str:
    """A UID a caller gave; one that is not well formed cannot be in any store."""
    if not isinstance(uid, str) or not is_uid(uid):
        raise NotFoundInStore(f"no such UID in the store: {uid!r:.80}")
    return uid


def read(data: bytes) -> Part10:
    """Check one file; `RejectedByStore` says why it is refused."""
    if len(data) < PREAMBLE_LENGTH + len(_PREFIX) or (
        data[PREAMBLE_LENGTH : PREAMBLE_LENGTH + len(_PREFIX)] != _PREFIX
    ):
        raise RejectedByStore(
            "not a DICOM Part 10 file: no 'DICM' prefix after the 128-byte preamble (PS3.10 §7.1)"
        )
    if data[:PREAMBLE_LENGTH] != bytes(PREAMBLE_LENGTH):  # copy the file only when needed
        data = bytes(PREAMBLE_LENGTH) + data[PREAMBLE_LENGTH:]
    _check_structure(data)  # first: pydicom itself only warns about some of what this refuses
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many kinds on hostile input; all mean "unreadable"
        raise RejectedByStore(f"unreadable DICOM file: {type(exc).__name__}: {exc}") from exc
    uids = {
        keyword: _uid(ds, keyword)
        for keyword in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")
    }
    for keyword, value in uids.items():
        if not value:
            raise RejectedByStore(f"the file has no {keyword}")
        if not is_uid(value):
            raise RejectedByStore(f"the {keyword} is not a valid UID (PS3.5 §9.1): {value!r:.80}")
    if "Rows" in ds and not any(keyword in ds for keyword in _PIXEL_DATA):
        raise RejectedByStore(
            "the file describes an image (Rows) but has no Pixel Data: cut short?"
        )
    return Part10(
        data=data,
        sop_instance_uid=uids["SOPInstanceUID"],
        sop_class_uid=uids["SOPClassUID"],
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        study_date=_text(ds, "StudyDate"),
        accession_number=_text(ds, "AccessionNumber"),
        study_description=_text(ds, "StudyDescription"),
        modality=_text(ds, "Modality"),
        series_number=_integer(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        instance_number=_integer(ds, "InstanceNumber"),
        pixel_bytes=_pixel_bytes(ds),
    )


def _pixel_bytes(ds: Dataset) -> int | None:
    """Read from the data set already parsed, so that bounding it costs no second parse."""
    try:
        return (
            int(ds.get("Rows") or 0)
            * int(ds.get("Columns") or 0)
            * int(ds.get("SamplesPerPixel") or 1)
            * max(int(ds.get("BitsAllocated") or 8), 1)
            * int(ds.get("NumberOfFrames") or 1)
            // 8
        )
    except Exception:  # as in `_text`: a value that does not decode does not read as a number
        return None


def _check_structure(data: bytes) -> None:
    """The file meta names a transfer syntax, and every top-level element of the data set
    holds as many bytes as it declares, up to the last byte of the file."""
    fp = io.BytesIO(data)
    fp.seek(PREAMBLE_LENGTH + len(_PREFIX))
    try:
        # File meta information is always explicit VR little endian (PS3.10 §7.1).
        meta = {
            element.tag: element
            for element in data_element_generator(fp, False, True, stop_when=_past_file_meta)
        }
    except Exception as exc:
        raise RejectedByStore(f"unreadable file meta information: {exc}") from exc
    for element in meta.values():
        _check_length(element)
    syntax = _transfer_syntax(meta.get(BaseTag(_TRANSFER_SYNTAX)))
    if syntax == DeflatedExplicitVRLittleEndian:
        return  # zlib refuses a stream cut short when pydicom inflates it
    try:
        implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
    except ValueError as exc:
        raise RejectedByStore(f"unknown transfer syntax: {syntax!r:.80}") from exc
    end = fp.tell()
    try:
        for element in data_element_generator(fp, implicit, little):
            end = fp.tell()
            if not isinstance(element, RawDataElement):
                continue  # a sequence of undefined length: pydicom raised if it had no end
            if element.length == _UNDEFINED_LENGTH:
                # Encapsulated pixel data: pydicom only warns when the delimiter is missing.
                if data[end - 8 : end] != (_DELIMITER_LE if little else _DELIMITER_BE):
                    raise RejectedByStore(
                        f"the file is cut short: element {element.tag} has no Sequence Delimiter"
                    )
            else:
                _check_length(element)
    except RejectedByStore:
        raise
    except Exception as exc:  # an unterminated sequence ends in EOFError or OSError
        raise RejectedByStore(f"the file is cut short or malformed: {exc}") from exc
    if end != len(data):
        raise RejectedByStore(
            f"the file is cut short: {len(data) - end} bytes after the last complete element"
        )


def _check_length(element: RawDataElement | DataElement) -> None:
    if not isinstance(element, RawDataElement) or element.length == _UNDEFINED_LENGTH:
        return
    if element.value is not None and len(element.value) != element.length:
        raise RejectedByStore(
            f"the file is cut short: element {element.tag} declares {element.length}"
            f" bytes and holds {len(element.value)}"
        )


def _transfer_syntax(element: RawDataElement | DataElement | None) -> UID:
    value = element.value if isinstance(element, RawDataElement) else None
    text = (value or b"").decode("ascii", errors="replace").strip("\0 ")
    if not text:
        raise RejectedByStore("the file meta information has no Transfer Syntax UID (0002,0010)")
    return UID(text, validation_mode=config.IGNORE)


def _past_file_meta(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag.group != 0x0002


def _uid(ds: Dataset, keyword: str) -> str:
    """A UID as written, read from the raw bytes: no value validation, hence no warnings."""
    element = ds.get_item(keyword)
    if isinstance(element, RawDataElement):
        return (element.value or b"").decode("ascii", errors="replace").strip("\0 ")
    return _text(ds, keyword)


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # a value that does not decode is as good as absent for an index
        return ""
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(item) for item in value)
    return str(value).strip()


def _integer(ds: Dataset, keyword: str) -> int | None:
    text = _text(ds, keyword)
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None
