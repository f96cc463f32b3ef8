"""WADO-RS Retrieve Frames (PS3.18 §10.4.1.1.2): the pixel data of chosen frames.

Answered as `multipart/related; type="application/octet-stream"`, one part per
requested frame in the order asked (`/frames/1,3,5`), each the frame's native
(uncompressed) pixel bytes, little endian, as PS3.18 §8.7.3.3.2 describes;
compressed stored frames are decoded first. Only the caller's ready shares
answer, from the de-identified store only, as for the other WADO-RS resources.
"""

from __future__ import annotations

import asyncio
import io
import secrets

import pydicom
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydicom.errors import InvalidDicomError

from services.imaging.dicomweb.qido import entitled_study
from services.imaging.dicomweb.rendered import parse_frame, shared_instance
from services.imaging.dicomweb.wado import NotAcceptable
from shared.identity.deps import CurrentUser, PlatformDep, Session
from shared.problems import NotFound

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])
OCTETS = "application/octet-stream"
MAX_FRAMES_PER_REQUEST = 1000


def frame_numbers(value: str) -> list[int]:
    """`1,3,5` as frame numbers (1-based); any malformed list names no frame (404)."""
    parts = value.split(",")
    if not parts or len(parts) > MAX_FRAMES_PER_REQUEST:
        raise NotFound("no such frames")
    numbers = [parse_frame(part.strip()) for part in parts]
    if min(numbers) < 1:
        raise NotFound("frames are numbered from 1")
    return numbers


def native_frames(data: bytes, numbers: list[int]) -> list[bytes]:
    """The requested frames' pixel bytes, decoded to native little-endian order."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, ValueError, EOFError) as exc:
        raise NotFound("this instance cannot be read") from exc
    if "PixelData" not in ds:
        raise NotFound("this instance has no pixel data")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    missing = [n for n in numbers if n > count]
    if missing:
        raise NotFound(f"no frame {missing[0]}: this instance has {count}")
    try:
        array = ds.pixel_array
    except Exception as exc:  # pydicom raises many kinds for undecodable pixel data
        raise NotAcceptable("this instance's pixel data cannot be decoded here") from exc
    if count == 1:
        array = array.reshape((1, *array.shape))
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return [little[n - 1].tobytes() for n in numbers]


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    response_class=Response,
    responses={200: {"content": {"multipart/related": {}}}},
)
async def retrieve_frames(
    study: str,
    series: str,
    instance: str,
    frames: str,
    request: Request,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
) -> Response:
    """WADO-RS Retrieve Frames: `multipart/related; type="application/octet-stream"`."""
    accept = request.headers.get("accept", "").lower()
    if accept and not any(m in accept for m in ("multipart/related", "multipart/*", "*/*")):
        raise NotAcceptable('frames are sent as multipart/related; type="application/octet-stream"')
    numbers = frame_numbers(frames)
    await entitled_study(session, caller, study)
    data = await shared_instance(platform, study, series, instance)
    parts = await asyncio.to_thread(native_frames, data, numbers)
    boundary = secrets.token_hex(16)
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: {OCTETS}\r\n\r\n".encode() + part + b"\r\n"
            for part in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    media_type = f'multipart/related; type="{OCTETS}"; boundary={boundary}'
    return Response(body, media_type=media_type)
