"""Keyed UID replacement (PS3.15 Table E.1-1 action U; PS3.5 9 and B.2).

`remap_uid(uid, key)` is a pure function of the original UID and the
agreement's key, so sharing the same study twice under one agreement gives the
same UIDs, every reference between instances (Referenced SOP Instance UID,
Frame of Reference, Source Image Sequence...) stays consistent without a
mapping table, and two agreements get unlinkable UIDs.

The new UID is ``2.25.`` followed by the decimal form of a UUID (PS3.5 B.2):
the first 128 bits of HMAC-SHA256(key, original UID), stamped as an RFC 9562
version 8 (custom) UUID. That is at most 44 characters, within the 64 of the
UI value representation, and a valid UID (no leading zeros, digits and dots).

Not every UI value names an instance: SOP classes, transfer syntaxes, coding
schemes and other entries of the DICOM UID registry are kept, as are the
values of the attributes that name a class rather than an instance (a
vendor's private SOP Class UID must stay what it is).
"""

from __future__ import annotations

import hashlib
import hmac

from pydicom.uid import UID

__all__ = ["CLASS_UID_TAGS", "DEVICE_UID_TAGS", "DICOM_ROOT", "is_remappable", "remap_uid"]

DICOM_ROOT = "1.2.840.10008."

# Attributes whose UI value names a class, a syntax or a scheme, never an instance.
CLASS_UID_TAGS: frozenset[int] = frozenset(
    {
        0x00000002,  # Affected SOP Class UID
        0x00000003,  # Requested SOP Class UID
        0x00020002,  # Media Storage SOP Class UID
        0x00020010,  # Transfer Syntax UID
        0x00020012,  # Implementation Class UID
        0x00020032,  # RTV Communication SOP Class UID
        0x00020100,  # Private Information Creator UID
        0x00041510,  # Referenced SOP Class UID in File
        0x00041512,  # Referenced Transfer Syntax UID in File
        0x0004151A,  # Referenced Related General SOP Class UID in File
        0x00080016,  # SOP Class UID
        0x0008001A,  # Related General SOP Class UID
        0x0008001B,  # Original Specialized SOP Class UID
        0x00080062,  # SOP Classes in Study
        0x0008010C,  # Coding Scheme UID
        0x0008010D,  # Context Group Extension Creator UID
        0x00080117,  # Context UID
        0x00080118,  # Mapping Resource UID
        0x0008040E,  # Stored Instance Transfer Syntax UID
        0x00081150,  # Referenced SOP Class UID
        0x0008115A,  # SOP Classes Supported
        0x00083002,  # Available Transfer Syntax UID
        0x00340003,  # Flow Transfer Syntax UID
        0x04000010,  # MAC Calculation Transfer Syntax UID
        0x04000510,  # Encrypted Content Transfer Syntax UID
        0x30100052,  # Pertinent SOP Classes in Study
        0x30100053,  # Pertinent SOP Classes in Series
    }
)

# UIDs of equipment, not of the patient's instances: replaced (U) by default, kept as they are
# under Retain Device Identity (Table E.1-1 column "Rtn. Dev. Id."), so the gate does not look
# for them.
DEVICE_UID_TAGS: frozenset[int] = frozenset(
    {
        0x00181002,  # Device UID
        0x0018100B,  # Manufacturer's Device Class UID
    }
)


def remap_uid(uid: str, key: bytes) -> str:
    """The UID that replaces `uid` under `key`: ``2.25.`` + a keyed UUID (PS3.5 B.2)."""
    digest = hmac.new(key, uid.strip().encode("ascii", "replace"), hashlib.sha256).digest()
    value = int.from_bytes(digest[:16], "big")
    value &= ~(0xF000 << 64)  # RFC 9562 4.2: version field, bits 48-51
    value |= 0x8000 << 64  # version 8: custom
    value &= ~(0xC000 << 48)  # RFC 9562 4.1: variant field, bits 64-65
    value |= 0x8000 << 48  # variant 10
    return f"2.25.{value}"


def is_remappable(tag: int, uid: str) -> bool:
    """Does the UI value `uid` of attribute `tag` name an instance that must be replaced?"""
    if tag in CLASS_UID_TAGS:
        return False
    value = uid.strip()
    if not value or value.startswith(DICOM_ROOT):  # the whole DICOM UID registry is under it
        return False
    return UID(value).name == value  # not a name from pydicom's copy of the registry
