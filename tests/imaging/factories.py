"""DICOM test data built in memory: pydicom's bundled files and synthetic instances.

Nothing binary is committed; every instance a test needs is written here by pydicom.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import pydicom
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

_SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}
_numbers = count(1)


def bundled(name: str) -> bytes:
    """One of pydicom's bundled test files (never downloaded: these ship with pydicom)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom does not bundle {name}"
    return Path(str(path)).read_bytes()


def arabic() -> bytes:
    """pydicom's file whose patient name is in Arabic (ISO_IR 127)."""
    (path,) = (name for name in get_charset_files() if name.endswith("chrArab.dcm"))
    return Path(path).read_bytes()


def parse(data: bytes) -> pydicom.FileDataset:
    return pydicom.dcmread(io.BytesIO(data))


def with_preamble(data: bytes, preamble: bytes) -> bytes:
    """The same file with another 128-byte preamble (a PE header, say)."""
    return preamble.ljust(128, b"\x90")[:128] + data[128:]


def zeroed(data: bytes) -> bytes:
    return bytes(128) + data[128:]


def instance(
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str | None = None,
    modality: str = "CT",
    patient_id: str = "JISR-0001",
    patient_name: str = "Doe^Jane",
    study_date: str = "20240105",
    accession_number: str = "ACC-0001",
    study_description: str = "Chest",
    series_number: int = 1,
    series_description: str = "Axial",
    instance_number: int | None = None,
    rows: int = 4,
    columns: int = 4,
) -> bytes:
    """A small CT or MR image as a DICOM Part 10 file."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = _SOP_CLASSES[modality]
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession_number
    ds.StudyDescription = study_description
    ds.StudyID = "1"
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.InstanceNumber = instance_number if instance_number is not None else next(_numbers)
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(i % 251 for i in range(rows * columns * 2))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@dataclass
class Archive:
    """Two studies as a hospital sends them.

    Study A: Jane Doe, 2024-01-05, ACC-A; a CT series of three images and an MR
    series of two. Study B: Ahmed Benali, 2017-03-20, ACC-B; one CT image.
    """

    study_a: str = field(default_factory=generate_uid)
    study_b: str = field(default_factory=generate_uid)
    ct_series: str = field(default_factory=generate_uid)
    mr_series: str = field(default_factory=generate_uid)
    b_series: str = field(default_factory=generate_uid)
    files: dict[str, list[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = {"study_uid": self.study_a, "accession_number": "ACC-A", "study_date": "20240105"}
        self.files[self.ct_series] = [
            instance(**a, series_uid=self.ct_series, series_number=1, instance_number=n)
            for n in (3, 1, 2)
        ]
        self.files[self.mr_series] = [
            instance(
                **a,
                series_uid=self.mr_series,
                modality="MR",
                series_number=2,
                series_description="T1",
                instance_number=n,
            )
            for n in (1, 2)
        ]
        self.files[self.b_series] = [
            instance(
                study_uid=self.study_b,
                series_uid=self.b_series,
                patient_id="JISR-0002",
                patient_name="Benali^Ahmed",
                study_date="20170320",
                accession_number="ACC-B",
                study_description="Abdomen",
                instance_number=1,
            )
        ]

    def all(self) -> list[bytes]:
        return [data for files in self.files.values() for data in files]

    def of_study(self, study_uid: str) -> list[bytes]:
        series = (self.ct_series, self.mr_series) if study_uid == self.study_a else (self.b_series,)
        return [data for uid in series for data in self.files[uid]]
