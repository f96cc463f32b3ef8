"""Builders for the de-identification tests (no tests here): a synthetic study of two
instances full of planted identifiers, pydicom's bundled files, and a write/read round trip.

The patient is Ahmed Benali (أحمد بنعلي), ID JSR-884213, born 1980-05-14; instance B
references instance A. Each identifier is planted somewhere a profile or a peer tends
to miss: a nested ImageComments, an SR text value, a private block, file meta.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, UltrasoundImageStorage

KEY = b"agreement-AG-2016-07-secret-key!"
OTHER_KEY = b"agreement-AG-2024-01-another-key"
PSEUDONYM = "JISR-7F3A21"

FAMILY, GIVEN = "Benali", "Ahmed"
PATIENT_ID = "JSR-884213"
OTHER_ID = "DZ-ORAN-55120"
ACCESSION = "ACC20240117"
BIRTH_DATE = "19800514"
STUDY_UID = "1.2.826.0.1.3680043.10.1137.1.1"
SERIES_UID = "1.2.826.0.1.3680043.10.1137.1.2"
FRAME_UID = "1.2.826.0.1.3680043.10.1137.1.3"
SOP_A = "1.2.826.0.1.3680043.10.1137.1.4.1"
SOP_B = "1.2.826.0.1.3680043.10.1137.1.4.2"
SAFE_CREATOR = "ACME 1.0"
UNSAFE_CREATOR = "SPY 2.0"
SAFE_PRIVATE = (SAFE_CREATOR, 0x00090002)


def bundled(name: str) -> Path:
    """A file pydicom ships (never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom does not bundle {name}"
    return Path(str(path))


def charset_file(name: str) -> Path:
    found = get_charset_files(name)
    assert found, f"pydicom does not bundle {name}"
    return Path(found[0])


def read(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def roundtrip(ds: Dataset) -> Dataset:
    """`ds` written as a DICOM file (preamble, file meta) and read back."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def instance(sop_uid: str = SOP_A, *, references: str | None = None) -> Dataset:
    """One CT instance of Ahmed Benali's study, identifiers planted at every depth."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.FrameOfReferenceUID = FRAME_UID
    ds.Modality = "CT"
    ds.PatientName = f"{FAMILY}^{GIVEN}"
    ds.PatientID = PATIENT_ID
    ds.IssuerOfPatientID = "EHU-ORAN"
    ds.OtherPatientIDsSequence = Sequence([_item(PatientID=OTHER_ID, TypeOfPatientID="TEXT")])
    ds.PatientBirthDate = BIRTH_DATE
    ds.PatientSex = "M"
    ds.PatientAge = "043Y"
    ds.PatientWeight = "78"
    ds.AccessionNumber = ACCESSION
    ds.StudyID = "S884213"
    ds.StudyDate = "20240117"
    ds.StudyTime = "101500"
    ds.SeriesDate = "20240117"
    ds.AcquisitionDateTime = "20240117102233.500000+0100"
    ds.ContentDate = "20240118"
    ds.InstitutionName = "EHU 1er Novembre 1954 Oran"
    ds.ReferringPhysicianName = "Haddad^Karim"
    ds.OperatorsName = "Saidi^Nora"
    ds.StationName = "CT-ORAN-2"
    ds.DeviceSerialNumber = "SN-77812"
    ds.StudyDescription = f"CT thorax {GIVEN} {FAMILY}"
    ds.SeriesDescription = "Axial 5mm"
    ds.ImageComments = (
        f"patient {FAMILY.upper()} seen on {BIRTH_DATE[6:]}/{BIRTH_DATE[4:6]}/{BIRTH_DATE[:4]}"
    )
    ds.BurnedInAnnotation = "NO"
    ds.RequestAttributesSequence = Sequence(
        [
            _item(
                AccessionNumber=ACCESSION,
                RequestedProcedureID="RP-1",
                RequestedProcedureDescription=f"thorax for {FAMILY}",
                ScheduledProcedureStepID="SPS-1",
            )
        ]
    )
    ds.ContentSequence = Sequence(
        [_item(RelationshipType="CONTAINS", ValueType="TEXT", TextValue=f"{GIVEN} {FAMILY}, mass")]
    )
    if references is not None:
        ds.ReferencedImageSequence = Sequence(
            [_item(ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=references)]
        )
    block = ds.private_block(0x0009, SAFE_CREATOR, create=True)
    block.add_new(0x01, "LO", f"{FAMILY} {GIVEN}")  # not on the safe list
    block.add_new(0x02, "DS", "1.5")  # on the safe list
    spy = ds.private_block(0x0011, UNSAFE_CREATOR, create=True)
    spy.add_new(0x01, "UN", f"id={PATIENT_ID}".encode())
    ds.Rows, ds.Columns = 16, 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(256)) * 2
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "ORAN_PACS"
    ds.preamble = b"\x00" * 128
    return ds


def study() -> tuple[Dataset, Dataset]:
    """Instances A and B of one study; B's Referenced Image Sequence points at A."""
    return instance(SOP_A), instance(SOP_B, references=SOP_A)


def ultrasound(burned_in: str | None = None) -> Dataset:
    """A small ultrasound image, with Burned In Annotation as given (None: absent)."""
    ds = instance("1.2.826.0.1.3680043.10.1137.2.1")
    ds.SOPClassUID = UltrasoundImageStorage
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    ds.Modality = "US"
    del ds.BurnedInAnnotation
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    return ds


def nested(depth: int) -> Dataset:
    """A dataset whose Content Sequence nests `depth` levels deep."""
    inner = _item(ValueType="TEXT", TextValue="leaf")
    for _ in range(depth):
        inner = _item(ValueType="CONTAINER", ContentSequence=Sequence([inner]))
    ds = instance()
    ds.ContentSequence = inner.ContentSequence
    return ds
