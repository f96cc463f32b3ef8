"""DICOM files framed as `multipart/related; type="application/dicom"` (PS3.18 §8.7.3.1).

Used by a store that has no DICOMweb server of its own (the file store) to
answer WADO-RS Retrieve as Orthanc's plugin does: one part per file, the file
byte for byte, a random boundary (RFC 2046 §5.1.1).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

from services.imaging.stores.base import Retrieval

__all__ = ["related"]


def related(files: AsyncIterator[bytes]) -> Retrieval:
    """One part per file of `files`, written as they come."""
    boundary = secrets.token_hex(16)
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()

    async def chunks() -> AsyncIterator[bytes]:
        async for data in files:
            yield head
            yield data
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    async def aclose() -> None:
        aclose_files = getattr(files, "aclose", None)
        if aclose_files is not None:
            await aclose_files()

    media_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return Retrieval(media_type, chunks(), aclose)
