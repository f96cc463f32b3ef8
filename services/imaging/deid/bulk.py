"""A Part 10 file read up to its pixel data, which is carried through byte for byte.

De-identification never reads pixels (burned-in text is refused by attribute,
`burned_in.py`) and the gate skips bulk data, yet parsing a file whole copies
its pixel data into the dataset, writing copies it again, and reading the
written file back for the gate a third time: for a 0.5 MB CT slice those copies
cost as much as the cleaning itself. `split` reads only the header (file meta
and every element before the pixel data) and says where the pixel data element
starts, once it has checked that this element runs exactly to the end of the
file; `join` puts a de-identified header back in front of those same bytes.

Anything unusual (a deflated transfer syntax, elements after the pixel data
such as trailing padding or digital signatures, a truncated element, no file
meta) gives None, and the caller reads the file whole as before.
"""

from __future__ import annotations

import io
import struct

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

__all__ = ["carries", "header", "join", "split"]

_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # float, double, pixel data
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"UN"})
_UNDEFINED = 0xFFFFFFFF
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD


def split(data: bytes) -> tuple[Dataset, int] | None:
    """The file's header as a dataset and the offset of its pixel data element, or None.

    None also when the file does not parse: the caller's whole read then reports
    the error as it always has.
    """
    found = header(data)
    if found is None or not carries(data, found[1], found[2]):
        return None
    return found[0], found[1]


def header(data: bytes) -> tuple[Dataset, int, str] | None:
    """`data`, a whole file or only its first bytes, read up to its pixel data element.

    The header, the element's offset and the transfer syntax; None when no pixel
    data element starts in `data` after a header that reads (a prefix too short
    for the header ends without one). Whether the element then runs to the end of
    the file is for `carries` to say, on the whole file.
    """
    buffer = io.BytesIO(data)
    try:
        ds = pydicom.dcmread(buffer, stop_before_pixels=True)
    except Exception:  # the whole read will say what is wrong
        return None
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if not syntax or syntax == DeflatedExplicitVRLittleEndian:
        return None  # deflated: the offset is in the inflated stream, not in `data`
    offset = buffer.tell()
    if offset + 8 > len(data):
        return None
    order = "<" if syntax != ExplicitVRBigEndian else ">"
    group, element = struct.unpack_from(f"{order}HH", data, offset)
    if (group << 16 | element) not in _PIXEL_TAGS:
        return None
    return ds, offset, str(syntax)


def carries(data: bytes, offset: int, syntax: str) -> bool:
    """Whether the pixel data element at `offset` of the whole file `data` runs exactly to its end."""
    end = _element_end(
        data,
        offset,
        implicit=syntax == ImplicitVRLittleEndian,
        little=syntax != ExplicitVRBigEndian,
    )
    return end == len(data)


def _element_end(data: bytes, offset: int, *, implicit: bool, little: bool) -> int | None:
    """Where the pixel data element starting at `offset` ends, or None if it is not one."""
    order = "<" if little else ">"
    if offset + 8 > len(data):
        return None
    group, element = struct.unpack_from(f"{order}HH", data, offset)
    if (group << 16 | element) not in _PIXEL_TAGS:
        return None
    if implicit:
        (length,) = struct.unpack_from(f"{order}L", data, offset + 4)
        start = offset + 8
    else:
        if data[offset + 4 : offset + 6] not in _LONG_VRS or offset + 12 > len(data):
            return None
        (length,) = struct.unpack_from(f"{order}L", data, offset + 8)
        start = offset + 12
    if length != _UNDEFINED:
        return start + int(length)
    if not little:
        return None  # encapsulated pixel data exists only in little endian syntaxes
    return _items_end(data, start)


def _items_end(data: bytes, position: int) -> int | None:
    """The end of an encapsulated pixel data element's items and their sequence delimiter."""
    while position + 8 <= len(data):
        group, element, length = struct.unpack_from("<HHL", data, position)
        tag = group << 16 | element
        position += 8
        if tag == _SEQUENCE_END:
            return position
        if tag != _ITEM or length == _UNDEFINED:
            return None
        position += int(length)
    return None


def join(header: bytes, data: bytes, offset: int) -> bytes:
    """A written header followed by the pixel data element of `data` as it is."""
    return b"".join((header, memoryview(data)[offset:]))
