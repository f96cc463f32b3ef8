"""WADO-RS rendered frames for partners (PS3.18 §10.4.1.1.3): one frame of a shared instance as PNG.

`GET /dicomweb/studies/{s}/series/{se}/instances/{i}/frames/{n}/rendered`
answers an 8-bit grayscale `image/png` of frame `n` (1-based). The stored
values go through the modality LUT (RescaleSlope and RescaleIntercept), then
the linear VOI LUT of PS3.3 C.11.2.1.2.1 with the window of `?window=center,width`
(PS3.18 §8.3.5.1.3), else the instance's first WindowCenter/WindowWidth, else
the frame's minimum and maximum. MONOCHROME1 is inverted so that the PNG always
reads as MONOCHROME2. The PNG is written with the standard library (zlib, struct).

Visibility is WADO-RS's: only the de-identified studies of the caller's ready
shares, only from the shared store; anything else is 404. A frame number out
of range is 404; an instance without pixel data is 404; colour or otherwise
unrenderable pixels are 406.
"""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydicom.errors import InvalidDicomError

from services.imaging.dicomweb.qido import entitled_study
from services.imaging.dicomweb.wado import NotAcceptable
from services.imaging.locations import shared_copies
from services.imaging.stores import NotFoundInStore
from shared.identity.deps import CurrentUser, PlatformDep, Session
from shared.platform import Platform
from shared.problems import BadRequest, NotFound

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

PNG = "image/png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ACCEPTABLE = ("image/png", "image/*", "*/*")
MAX_FRAME_PIXELS = 8192 * 8192


@dataclass(frozen=True, slots=True)
class Window:
    """A linear VOI LUT window (PS3.3 C.11.2.1.2.1); `width` is at least 1."""

    center: float
    width: float


def parse_window(value: str | None) -> Window | None:
    """`center,width[,function]` (PS3.18 §8.3.5.1.3); only the LINEAR function is offered."""
    if value is None or value == "":
        return None
    parts = [part.strip() for part in value.split(",")]
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].lower() != "linear"):
        raise BadRequest("window is center,width (the linear VOI LUT function only)")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError as exc:
        raise BadRequest("window center and width are numbers") from exc
    if not (np.isfinite(center) and np.isfinite(width)) or width < 1:
        raise BadRequest("window width is at least 1")
    return Window(center, width)


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        if not value:
            return None
        value = value[0]
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def voi_linear(values: np.ndarray, window: Window) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 with ymin 0 and ymax 255, as unsigned bytes."""
    c, w = window.center, window.width
    low = c - 0.5 - (w - 1) / 2
    high = c - 0.5 + (w - 1) / 2
    if w <= 1:
        scaled = np.where(values > high, 255.0, 0.0)
    else:
        scaled = ((values - (c - 0.5)) / (w - 1) + 0.5) * 255.0
        scaled = np.where(values <= low, 0.0, np.where(values > high, 255.0, scaled))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def png_gray8(pixels: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG (colour type 0), filter 0 on every row, zlib level 6."""
    height, width = pixels.shape
    raw = np.zeros((height, width + 1), dtype=np.uint8)
    raw[:, 1:] = pixels
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def render_frame(data: bytes, frame: int, window: Window | None = None) -> bytes:
    """Frame `frame` (1-based) of a Part 10 file as PNG; NotFound or NotAcceptable otherwise."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, ValueError, EOFError) as exc:
        raise NotFound("this instance cannot be read") from exc
    if "PixelData" not in ds:
        raise NotFound("this instance has no pixel data")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise NotAcceptable("only grayscale frames are rendered")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise NotAcceptable(f"{photometric} frames are not rendered")
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows < 1 or columns < 1 or rows * columns > MAX_FRAME_PIXELS:
        raise NotAcceptable("this instance's frame size is not rendered")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frame < 1 or frame > frames:
        raise NotFound(f"no frame {frame}: this instance has {frames}")
    try:
        array = ds.pixel_array
    except Exception as exc:  # pydicom raises many kinds for undecodable pixel data
        raise NotAcceptable("this instance's pixel data cannot be decoded here") from exc
    stored = array[frame - 1] if frames > 1 else array
    if stored.ndim != 2:
        raise NotAcceptable("only grayscale frames are rendered")
    slope = _first(ds.get("RescaleSlope")) or 1.0
    intercept = _first(ds.get("RescaleIntercept")) or 0.0
    values = stored.astype(np.float64) * slope + intercept
    if window is None:
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        if center is not None and width is not None and width >= 1:
            window = Window(center, width)
        else:
            low, high = float(values.min()), float(values.max())
            window = Window((low + high + 1) / 2, max(high - low + 1, 1.0))
    pixels = voi_linear(values, window)
    if photometric == "MONOCHROME1":
        pixels = (255 - pixels).astype(np.uint8)
    return png_gray8(pixels)


def parse_frame(value: str) -> int:
    """A single 1-based frame number; anything else names no frame (404)."""
    if not value.isdigit() or len(value) > 9:
        raise NotFound("no such frame")
    return int(value)


async def shared_instance(platform: Platform, study: str, series: str, instance: str) -> bytes:
    """The de-identified file of one instance of `study`/`series`; NotFound otherwise."""
    async with shared_copies(platform) as store:
        try:
            found = await store.instances(study, series)
        except NotFoundInStore as exc:
            raise NotFound("no such study or series") from exc
        if instance not in {ref.sop_instance_uid for ref in found}:
            raise NotFound("no such instance")
        try:
            return await store.get(instance)
        except NotFoundInStore as exc:
            raise NotFound("no such instance") from exc


async def rendered_png(
    platform: Platform, study: str, series: str, instance: str, frame: int, window: Window | None
) -> Response:
    data = await shared_instance(platform, study, series, instance)
    body = await asyncio.to_thread(render_frame, data, frame, window)
    return Response(body, media_type=PNG, headers={"Cache-Control": "private, max-age=300"})


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered",
    response_class=Response,
    responses={200: {"content": {PNG: {}}}},
)
async def retrieve_rendered_frame(
    study: str,
    series: str,
    instance: str,
    frame: str,
    request: Request,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
    window: str | None = None,
) -> Response:
    """WADO-RS Retrieve Rendered Frame (PS3.18 §10.4.1.1.3): `image/png`, `?window=c,w`."""
    accept = request.headers.get("accept", "").lower()
    if accept and not any(media in accept for media in _ACCEPTABLE):
        raise NotAcceptable("this resource is sent as image/png")
    number = parse_frame(frame)
    chosen = parse_window(window)
    await entitled_study(session, caller, study)
    return await rendered_png(platform, study, series, instance, number, chosen)
