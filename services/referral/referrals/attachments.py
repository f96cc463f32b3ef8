"""Attachments: PDF and images, checked by their content, stored under generated names."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from shared.problems import PayloadTooLarge, Unprocessable

# Leading bytes of the types we accept; the client's Content-Type is not trusted.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


def sniff(head: bytes) -> str | None:
    for magic, media_type in SIGNATURES:
        if head.startswith(magic):
            return media_type
    return None


def clean_filename(name: str | None) -> str:
    """A display name only: never used on disk."""
    base = os.path.basename((name or "").replace("\\", "/"))
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip() or "attachment"
    return base[:200]


def store(folder: Path, content: bytes, *, limit: int) -> tuple[str, str, str]:
    """Write `content` under a new name in `folder`; return (stored name, media type, sha256)."""
    if len(content) > limit:
        raise PayloadTooLarge(f"attachments are limited to {limit} bytes")
    if not content:
        raise Unprocessable("the file is empty")
    media_type = sniff(content[:16])
    if media_type is None:
        raise Unprocessable("only PDF, PNG and JPEG files may be attached (checked by content)")
    folder.mkdir(parents=True, exist_ok=True)
    stored = uuid.uuid4().hex
    (folder / stored).write_bytes(content)
    return stored, media_type, hashlib.sha256(content).hexdigest()
