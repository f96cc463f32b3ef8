"""A share carries the pixel data through unparsed and sends what the whole read would have sent."""

from __future__ import annotations

import functools
import io
import operator
from collections.abc import Callable

import pydicom
import pytest
from pydicom.uid import generate_uid

from services.imaging import deid
from services.imaging.deid import bulk
from services.imaging.shares import deidentify as spread
from services.imaging.shares.deidentify import (
    PARALLEL_FROM,
    PREFIX_BYTES,
    StudyBlocked,
    deidentify_study,
)
from tests.imaging.factories import bundled, instance

KEY = b"test-agreement-key-0123456789abcd"
ALIAS = "JISR-TEST-02"
# Secondary captures and pydicom's samples say nothing of burned-in text: allowed here, since
# what is compared is the two reading paths, not the refusal (tested in test_deid_refusals).
OPTIONS = deid.Options(allow_burned_in=True)


def generated() -> bytes:
    return instance(study_uid=generate_uid(), series_uid=generate_uid(), rows=64, columns=64)


# (file, whether its pixel data can be carried through: the others are read whole)
CASES = [
    ("generated CT, explicit VR little endian", generated, True),
    ("MR, implicit VR little endian", lambda: bundled("MR_small_implicit.dcm"), True),
    ("MR, explicit VR big endian", lambda: bundled("MR_small_bigendian.dcm"), True),
    ("NM, JPEG 2000 fragments", lambda: bundled("JPEG2000.dcm"), True),
    ("SC, JPEG baseline fragments", lambda: bundled("SC_rgb_jpeg_dcmtk.dcm"), True),
    ("SC, RLE lossless", lambda: bundled("SC_rgb_rle.dcm"), True),
    ("CT with trailing padding after the pixels", lambda: bundled("CT_small.dcm"), False),
    ("deflated explicit VR", lambda: bundled("image_dfl.dcm"), False),
]


@pytest.mark.parametrize(("name", "make", "carried"), CASES, ids=[case[0] for case in CASES])
def test_a_share_sends_byte_for_byte_what_the_whole_read_sends(
    name: str, make: object, carried: bool
) -> None:
    assert callable(make)
    data = make()

    assert (bulk.split(data) is not None) is carried
    (sent,) = deidentify_study([data], key=KEY, pseudonym=ALIAS, options=OPTIONS, processes=1)
    assert [sent] == whole_read_of_study([data])
    assert (
        pydicom.dcmread(io.BytesIO(sent)).PixelData == pydicom.dcmread(io.BytesIO(data)).PixelData
    )


def test_the_split_header_holds_everything_but_the_pixel_data() -> None:
    data = generated()

    split = bulk.split(data)

    assert split is not None
    header, offset = split
    whole = pydicom.dcmread(io.BytesIO(data))
    assert "PixelData" not in header
    assert [elem.tag for elem in header] == [elem.tag for elem in whole][:-1]
    assert data[offset : offset + 4] == b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-7], id="pixel data cut short"),
        pytest.param(lambda data: data + b"\xfc\xff\xfc\xff", id="bytes after the pixel data"),
    ],
)
def test_a_file_that_does_not_end_with_its_pixel_data_is_read_whole(damage: object) -> None:
    assert callable(damage)
    assert bulk.split(damage(generated())) is None


def test_encapsulated_pixel_data_without_its_delimiter_is_read_whole() -> None:
    data = bundled("SC_rgb_jpeg_dcmtk.dcm")
    assert bulk.split(data) is not None
    delimiter = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    assert data.endswith(delimiter)

    assert bulk.split(data[: -len(delimiter)]) is None


def test_what_is_not_dicom_is_left_to_the_whole_read_to_refuse() -> None:
    assert bulk.split(b"not a DICOM file at all") is None


def test_a_leak_in_a_header_whose_pixels_are_carried_through_still_blocks_the_share() -> None:
    ds = pydicom.dcmread(io.BytesIO(generated()))
    ds.private_block(0x0009, "JISR_TEST", create=True).add_new(0x10, "OB", b"Doe^Jane")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    assert bulk.split(data) is not None
    safe = deid.Options(safe_private_tags=frozenset({("JISR_TEST", 0x00090010)}))

    with pytest.raises(StudyBlocked) as blocked:
        deidentify_study([data], key=KEY, pseudonym=ALIAS, options=safe, processes=1)

    assert blocked.value.rule == "leak_detected"


def _rewritten(data: bytes, change: Callable[[pydicom.Dataset], None]) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    change(ds)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _long_private_block(ds: pydicom.Dataset) -> None:
    # A header longer than what a worker first reads of each file (dropped: not safe-listed).
    block = ds.private_block(0x0011, "JISR_LONG", create=True)
    block.add_new(0x01, "OB", bytes(PREFIX_BYTES + 1000))


def _trailing_padding(ds: pydicom.Dataset) -> None:
    ds.add_new(0xFFFCFFFC, "OB", bytes(16))  # Data Set Trailing Padding, after the pixels


def test_a_study_over_the_pool_sends_what_one_process_sends_whatever_its_files() -> None:
    study, series = generate_uid(), generate_uid()
    files = [
        instance(study_uid=study, series_uid=series, instance_number=n, rows=32, columns=32)
        for n in range(1, PARALLEL_FROM + 4)
    ]
    files[1] = _rewritten(files[1], _long_private_block)
    files[2] = _rewritten(files[2], _trailing_padding)
    assert bulk.header(files[1][:PREFIX_BYTES]) is None  # its identifiers are read here
    assert bulk.split(files[1]) is not None
    assert bulk.split(files[2]) is None  # read whole, in a worker

    one = deidentify_study(files, key=KEY, pseudonym=ALIAS, options=OPTIONS, processes=1)
    two = deidentify_study(files, key=KEY, pseudonym=ALIAS, options=OPTIONS, processes=2)

    assert spread._pool is not None  # the pool did the work: it did not break on the way
    assert two == one
    assert one == whole_read_of_study(files)


def whole_read_of_study(files: list[bytes]) -> list[bytes]:
    """What a share of `files` sent before: each parsed whole, with the study's identifiers."""
    datasets = [pydicom.dcmread(io.BytesIO(data)) for data in files]
    owns = [deid.identifiers_of(ds) for ds in datasets]
    study = functools.reduce(operator.or_, owns)
    sent = []
    for ds, own in zip(datasets, owns, strict=True):
        out = deid.deidentify(
            ds, key=KEY, pseudonym=ALIAS, options=OPTIONS, identifiers=study, own=own
        )
        buffer = io.BytesIO()
        out.save_as(buffer, enforce_file_format=True)
        sent.append(buffer.getvalue())
    return sent
