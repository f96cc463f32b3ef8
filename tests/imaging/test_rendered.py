"""WADO-RS rendered frames: PNG of a shared frame, windowed, for the share's institutions only."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from services.imaging.dicomweb.rendered import Window, parse_window, render_frame, voi_linear
from shared.platform import Platform
from shared.problems import BadRequest
from tests.factories import Factory
from tests.imaging.test_shares import Sharing, make_sharing

ROWS, COLUMNS, FRAMES = 6, 8, 3


def ct(
    *,
    study_uid: str,
    series_uid: str,
    frames: int = FRAMES,
    photometric: str = "MONOCHROME2",
    window: tuple[int, int] | None = (40, 400),
    number: int = 1,
) -> bytes:
    """A CT-like image in Hounsfield units (stored = HU + 1024), one ramp per frame."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.PatientID, ds.PatientName = "OUA-77", "Benali^Yacine"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240105", "101500", "1"
    ds.AccessionNumber, ds.StudyDescription = "ACC-R", "Chest"
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "CT", 1, "Axial"
    ds.InstanceNumber = number
    ds.BurnedInAnnotation = "NO"
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if frames > 1:
        ds.NumberOfFrames = frames
    hu = np.linspace(-1000, 1000, ROWS * COLUMNS).reshape(ROWS, COLUMNS)
    stack = np.stack([hu + 50 * f for f in range(frames)])
    ds.PixelData = (stack + 1024).clip(0, 4095).astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def png_pixels(body: bytes) -> tuple[int, int, bytes]:
    """Width, height and the unfiltered rows of an 8-bit grayscale PNG written with filter 0."""
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", body[8:16])
    assert kind == b"IHDR" and length == 13
    width, height, depth, colour = struct.unpack(">IIBB", body[16:26])
    assert (depth, colour) == (8, 0)
    offset, idat = 8, b""
    while offset < len(body):
        (size,) = struct.unpack(">I", body[offset : offset + 4])
        name = body[offset + 4 : offset + 8]
        data = body[offset + 8 : offset + 8 + size]
        (crc,) = struct.unpack(">I", body[offset + 8 + size : offset + 12 + size])
        assert crc == zlib.crc32(name + data) & 0xFFFFFFFF
        if name == b"IDAT":
            idat += data
        offset += 12 + size
    raw = zlib.decompress(idat)
    rows = [raw[r * (width + 1) : (r + 1) * (width + 1)] for r in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, b"".join(row[1:] for row in rows)


@dataclass
class Rendered:
    sharing: Sharing
    study: str
    series: str
    multi: str
    inverted: str

    def url(self, instance: str, frame: int = 1, study: str | None = None) -> str:
        return (
            f"/dicomweb/studies/{study or self.study}/series/{self.series}"
            f"/instances/{instance}/frames/{frame}/rendered"
        )

    async def get(
        self, instance: str, frame: int = 1, *, user: str = "provider", **params: str
    ) -> httpx.Response:
        who = {
            "provider": self.sharing.provider_radiologist,
            "third": self.sharing.stranger,
            "origin": self.sharing.referrer,
        }[user]
        return await self.sharing.client.get(
            self.url(instance, frame), params=params, headers=self.sharing.h(who)
        )


@pytest.fixture
async def rendered(factory: Factory, client: httpx.AsyncClient, platform: Platform) -> Rendered:
    study, series = generate_uid(), generate_uid()
    files = [
        ct(study_uid=study, series_uid=series, number=1),
        ct(study_uid=study, series_uid=series, frames=1, photometric="MONOCHROME1", number=2),
    ]
    sharing = await make_sharing(factory, client, platform, extra_files=files)
    made = await sharing.share(study)
    assert made.status_code == 201, made.text
    shared_study = made.json()["shared_study_uid"]
    answer = await client.get(
        f"/dicomweb/studies/{shared_study}/series",
        headers=sharing.h(sharing.provider_radiologist),
    )
    shared_series = answer.json()[0]["0020000E"]["Value"][0]
    answer = await client.get(
        f"/dicomweb/studies/{shared_study}/series/{shared_series}/instances",
        headers=sharing.h(sharing.provider_radiologist),
    )
    by_number = {
        item["00200013"]["Value"][0]: item["00080018"]["Value"][0] for item in answer.json()
    }
    return Rendered(sharing, shared_study, shared_series, by_number[1], by_number[2])


async def test_a_frame_comes_back_as_a_grayscale_png_of_the_instance_size(
    rendered: Rendered,
) -> None:
    response = await rendered.get(rendered.multi, 2)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    width, height, pixels = png_pixels(response.content)
    assert (width, height) == (COLUMNS, ROWS)
    assert len(pixels) == ROWS * COLUMNS


async def test_windows_and_frames_change_the_pixels(rendered: Rendered) -> None:
    default = png_pixels((await rendered.get(rendered.multi)).content)[2]
    soft = png_pixels((await rendered.get(rendered.multi, window="40,400")).content)[2]
    lung = png_pixels((await rendered.get(rendered.multi, window="-600,1500")).content)[2]
    other_frame = png_pixels((await rendered.get(rendered.multi, 3)).content)[2]

    assert default == soft  # the instance's own window is 40/400
    assert lung != soft
    assert other_frame != default
    assert soft[0] == 0 and soft[-1] == 255  # -1000 HU is black, +1000 HU white in 40/400


async def test_monochrome1_is_inverted(rendered: Rendered) -> None:
    response = await rendered.get(rendered.inverted, window="40,400")

    pixels = png_pixels(response.content)[2]
    assert pixels[0] == 255 and pixels[-1] == 0


async def test_frames_out_of_range_and_bad_windows_are_refused(rendered: Rendered) -> None:
    assert (await rendered.get(rendered.multi, FRAMES + 1)).status_code == 404
    assert (await rendered.get(rendered.multi, 0)).status_code == 404
    assert (await rendered.get(rendered.inverted, 2)).status_code == 404
    assert (await rendered.get(rendered.multi, window="40")).status_code == 400
    assert (await rendered.get(rendered.multi, window="40,0")).status_code == 400
    not_png = await rendered.sharing.client.get(
        rendered.url(rendered.multi),
        headers={
            **rendered.sharing.h(rendered.sharing.provider_radiologist),
            "Accept": "image/jpeg",
        },
    )
    assert not_png.status_code == 406


async def test_a_third_institution_and_the_original_uid_get_404(rendered: Rendered) -> None:
    third = await rendered.get(rendered.multi, user="third")
    original = await rendered.sharing.client.get(
        rendered.url(rendered.multi, study=rendered.sharing.archive.study_a),
        headers=rendered.sharing.h(rendered.sharing.provider_radiologist),
    )
    origin = await rendered.get(rendered.multi, user="origin")

    assert third.status_code == 404
    assert original.status_code == 404
    assert origin.status_code == 200


def test_the_linear_voi_lut_follows_ps3_3() -> None:
    values = np.array([[-200.0, 40.0, 239.5, 240.0, 1000.0]])
    out = voi_linear(values, Window(40, 400))
    assert out.tolist() == [[0, 128, 255, 255, 255]]
    assert parse_window("40,400,LINEAR") == Window(40, 400)
    with pytest.raises(BadRequest):
        parse_window("40,400,SIGMOID")


def test_an_instance_without_pixels_is_not_rendered() -> None:
    data = ct(study_uid=generate_uid(), series_uid=generate_uid(), frames=1)
    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    from shared.problems import NotFound

    with pytest.raises(NotFound):
        render_frame(buffer.getvalue(), 1)
