"""Patient pseudonyms: one per patient and agreement, the same in every service.

A keyed hash (HMAC-SHA256 under the platform's pseudonym secret) of the
agreement and the origin's patient id: stable within one agreement, so a
partner can follow a patient across referrals and shared studies, and
unlinkable across agreements; no mapping table exists to leak.
"""

from __future__ import annotations

import hashlib
import hmac


def pseudonym(secret: bytes, agreement_id: int, patient_id: int) -> str:
    digest = hmac.new(secret, f"{agreement_id}:{patient_id}".encode(), hashlib.sha256).hexdigest()
    return f"P-{digest[:10].upper()}"
