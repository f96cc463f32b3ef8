"""The de-identification engine as behaviour: what leaves, what stays, what is refused.

Real instances from pydicom's bundled corpus and a synthetic study full of planted
identifiers (tests/imaging/test_deid_factory.py); the gate checks every output.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian
from pydicom.valuerep import validate_value

from services.imaging.deid import (
    Options,
    deidentify,
    identifiers_of,
    remap_uid,
    scan,
    shift_days,
)
from tests.imaging.test_deid_factory import (
    FAMILY,
    GIVEN,
    KEY,
    OTHER_KEY,
    PATIENT_ID,
    PSEUDONYM,
    SAFE_CREATOR,
    SAFE_PRIVATE,
    SOP_A,
    STUDY_UID,
    UNSAFE_CREATOR,
    bundled,
    encoded,
    instance,
    read,
    roundtrip,
    study,
)

BASIC = Options()
EVERYTHING = Options(
    retain_dates_shifted=True,
    retain_patient_characteristics=True,
    retain_device_identity=True,
    clean_descriptors=True,
    safe_private_tags=frozenset({SAFE_PRIVATE}),
)
CORPUS = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "test-SR.dcm",
    "reportsi.dcm",
    "waveform_ecg.dcm",
    "examples_overlay.dcm",
    "liver_1frame.dcm",
]


def moved(yyyymmdd: str, days: int) -> str:
    day = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:])) + timedelta(days=days)
    return day.strftime("%Y%m%d")


def deid(ds: Dataset, options: Options = BASIC, key: bytes = KEY) -> Dataset:
    return deidentify(ds, key=key, pseudonym=PSEUDONYM, options=options)


# --- nothing of the original leaves --------------------------------------------------------


@pytest.mark.parametrize("options", [BASIC, EVERYTHING], ids=["basic", "every-option"])
def test_no_planted_identifier_survives_anywhere_in_the_study(options: Options) -> None:
    a, b = study()
    identifiers = identifiers_of(a) | identifiers_of(b)
    for original in (a, b):
        out = deid(original, options)
        assert scan(out, identifiers) == []
        assert scan(roundtrip(out), identifiers) == []


@pytest.mark.parametrize("name", CORPUS)
def test_bundled_instances_leave_with_no_original_identifier(name: str) -> None:
    original = read(bundled(name))
    identifiers = identifiers_of(original)
    assert scan(original, identifiers), "the gate must see the original's identifiers"
    for options in (BASIC, EVERYTHING):
        assert scan(roundtrip(deid(original, options)), identifiers) == []


def test_patient_name_and_id_become_the_agreement_pseudonym() -> None:
    out = deid(instance())
    assert str(out.PatientName) == PSEUDONYM
    assert out.PatientID == PSEUDONYM
    assert "OtherPatientIDsSequence" not in out
    assert "IssuerOfPatientID" not in out
    assert out.PatientBirthDate == ""
    assert out.AccessionNumber == ""
    assert deid(instance(), EVERYTHING).RequestAttributesSequence[0].AccessionNumber == ""


def test_the_input_dataset_is_left_as_it_was() -> None:
    original = instance()
    before = encoded(original)
    deid(original, EVERYTHING)
    assert encoded(original) == before
    assert original.PatientName == f"{FAMILY}^{GIVEN}"
    assert original.file_meta.MediaStorageSOPInstanceUID == SOP_A


def test_a_bundled_file_read_from_disk_is_left_as_it_was() -> None:
    original = read(bundled("CT_small.dcm"))
    before = encoded(original)
    deid(original, EVERYTHING)
    assert encoded(original) == before


def test_pixel_data_is_shared_not_copied_and_unchanged() -> None:
    original = read(bundled("CT_small.dcm"))
    out = deid(original)
    assert out["PixelData"].value is original["PixelData"].value
    assert roundtrip(out).PixelData == original.PixelData


# --- UIDs ----------------------------------------------------------------------------------


def test_sharing_the_same_study_twice_gives_the_same_uids() -> None:
    first, second = deid(instance()), deid(instance())
    for keyword in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
    ):
        assert first[keyword].value == second[keyword].value
    assert first.StudyInstanceUID == remap_uid(STUDY_UID, KEY)


def test_another_agreement_gets_other_uids() -> None:
    ours, theirs = deid(instance()), deid(instance(), key=OTHER_KEY)
    for keyword in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
    ):
        assert ours[keyword].value != theirs[keyword].value


def test_references_between_instances_stay_consistent() -> None:
    a, b = study()
    out_a, out_b = deid(a), deid(b)
    reference = out_b.ReferencedImageSequence[0]
    assert reference.ReferencedSOPInstanceUID == out_a.SOPInstanceUID
    assert reference.ReferencedSOPClassUID == CTImageStorage
    assert out_a.StudyInstanceUID == out_b.StudyInstanceUID
    assert out_a.FrameOfReferenceUID == out_b.FrameOfReferenceUID


def test_new_uids_are_valid_and_registry_uids_are_kept() -> None:
    original = read(bundled("rtplan.dcm"))
    out = roundtrip(deid(original))
    for uid in (out.StudyInstanceUID, out.SeriesInstanceUID, out.SOPInstanceUID):
        assert uid.startswith("2.25.") and UID(uid).is_valid and len(uid) <= 64
    assert out.SOPClassUID == original.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.5"
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID


def test_uids_nested_in_an_rt_plan_are_replaced_by_their_keyed_uids() -> None:
    original = read(bundled("rtplan.dcm"))
    out = deid(original)
    for keyword in ("ReferencedStructureSetSequence", "ReferencedRTPlanSequence"):
        before, after = original[keyword].value[0], out[keyword].value[0]
        assert after.ReferencedSOPInstanceUID == remap_uid(before.ReferencedSOPInstanceUID, KEY)
        assert after.ReferencedSOPClassUID == before.ReferencedSOPClassUID


def test_an_invalid_original_uid_is_replaced_by_a_valid_one() -> None:
    original = read(bundled("rtdose.dcm"))  # Referenced SOP Instance UID with a leading zero
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        out = deid(original)
        identifiers = identifiers_of(original)
    new = out.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID
    assert UID(new).is_valid
    assert scan(roundtrip(out), identifiers) == []


# --- dates ---------------------------------------------------------------------------------


def test_dates_shift_by_one_number_of_days_per_patient_and_keep_intervals() -> None:
    a, b = study()
    out_a = deid(a, Options(retain_dates_shifted=True))
    out_b = deid(b, Options(retain_dates_shifted=True))
    days = shift_days(KEY, PATIENT_ID)
    assert -365 <= days <= -1
    assert out_a.StudyDate == out_b.StudyDate == moved("20240117", days)
    assert out_a.ContentDate == moved("20240118", days)  # still the day after the study
    assert out_a.AcquisitionDateTime == moved("20240117", days) + "102233.500000+0100"
    assert out_a.StudyTime == "101500"  # whole days: times of day are unchanged
    assert out_a.LongitudinalTemporalInformationModified == "MODIFIED"
    assert out_a.PatientBirthDate == ""  # never kept, shifted or not


def test_another_patient_moves_by_another_number_of_days() -> None:
    assert shift_days(KEY, PATIENT_ID) != shift_days(KEY, "JSR-884214")
    assert shift_days(KEY, PATIENT_ID) != shift_days(OTHER_KEY, PATIENT_ID)


def test_without_the_dates_option_dates_are_emptied_or_removed() -> None:
    out = deid(instance())
    assert out.StudyDate == ""  # Z
    assert out.ContentDate == ""  # Z/D
    assert out.AcquisitionDateTime == ""  # X/Z/D
    assert out.StudyTime == ""
    assert "SeriesDate" not in out  # X/D
    assert out.LongitudinalTemporalInformationModified == "REMOVED"


# --- options -------------------------------------------------------------------------------


def test_patient_characteristics_stay_only_with_their_option() -> None:
    kept = deid(instance(), Options(retain_patient_characteristics=True))
    assert (kept.PatientSex, kept.PatientAge, kept.PatientWeight) == ("M", "043Y", 78)
    gone = deid(instance())
    assert gone.PatientSex == ""  # Z: Type 2 in the Patient module
    assert "PatientAge" not in gone and "PatientWeight" not in gone


def test_device_identity_stays_only_with_its_option() -> None:
    kept = deid(instance(), Options(retain_device_identity=True))
    assert (kept.DeviceSerialNumber, kept.StationName) == ("SN-77812", "CT-ORAN-2")
    gone = deid(instance())
    assert gone.DeviceSerialNumber == "" and gone.StationName == ""  # X/Z/D resolved to Z


def test_clean_descriptors_keeps_descriptions_without_the_patient() -> None:
    out = deid(instance(), Options(clean_descriptors=True))
    assert out.StudyDescription == "CT thorax"
    assert out.SeriesDescription == "Axial 5mm"
    assert out.ImageComments == "patient seen on"  # name and birth date both removed
    assert out.RequestAttributesSequence[0].RequestedProcedureDescription == "thorax for"


def test_without_clean_descriptors_descriptions_are_removed() -> None:
    out = deid(instance())
    for keyword in (
        "StudyDescription",
        "SeriesDescription",
        "ImageComments",
        "RequestAttributesSequence",
    ):
        assert keyword not in out


def test_free_text_the_table_does_not_list_is_cleaned_too() -> None:
    out = deid(instance())
    assert out.ContentSequence[0].TextValue == ", mass"


def test_private_tags_go_except_those_on_the_safe_list() -> None:
    safe = deid(instance(), Options(safe_private_tags=frozenset({SAFE_PRIVATE})))
    assert safe.private_block(0x0009, SAFE_CREATOR)[0x02].value == 1.5
    assert 0x00091001 not in safe  # same creator, not on the list
    assert all(elem.tag.group != 0x0011 for elem in safe)  # UNSAFE_CREATOR's whole block
    none = deid(instance())
    assert not any(elem.tag.is_private for elem in none)
    assert UNSAFE_CREATOR not in str(none)


def test_private_tags_of_a_bundled_file_are_removed() -> None:
    original = read(bundled("CT_small.dcm"))
    assert any(elem.tag.is_private for elem in original)
    assert not any(elem.tag.is_private for elem in deid(original))


def test_overlays_and_curves_are_removed_whole() -> None:
    original = read(bundled("examples_overlay.dcm"))
    assert any(elem.tag.group == 0x6000 for elem in original)
    assert not any(elem.tag.group & 0xFF00 == 0x6000 for elem in deid(original))


def test_the_method_attributes_say_what_was_applied() -> None:
    out = deid(instance(), EVERYTHING)
    assert out.PatientIdentityRemoved == "YES"
    codes = [
        (item.CodeValue, item.CodingSchemeDesignator)
        for item in out.DeidentificationMethodCodeSequence
    ]
    assert codes == [
        ("113100", "DCM"),  # Basic Application Confidentiality Profile
        ("113105", "DCM"),  # Clean Descriptors
        ("113107", "DCM"),  # Retain Longitudinal Temporal Information Modified Dates
        ("113108", "DCM"),  # Retain Patient Characteristics
        ("113109", "DCM"),  # Retain Device Identity
        ("113111", "DCM"),  # Retain Safe Private
    ]
    assert out.DeidentificationMethod[0] == "Basic Application Confidentiality Profile"
    basic = deid(instance())
    assert [item.CodeValue for item in basic.DeidentificationMethodCodeSequence] == ["113100"]


# --- files ---------------------------------------------------------------------------------


def test_the_output_round_trips_as_a_valid_dicom_file() -> None:
    out = roundtrip(deid(instance(), EVERYTHING))
    assert out.preamble == b"\x00" * 128
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.SpecificCharacterSet == "ISO_IR 192"
    assert out.PatientIdentityRemoved == "YES"


def test_a_preamble_carrying_text_is_zeroed() -> None:
    original = read(bundled("CT_small.dcm"))
    original.preamble = (f"{FAMILY} {PATIENT_ID}".encode()).ljust(128, b"\x00")
    assert roundtrip(deid(original)).preamble == b"\x00" * 128


def test_compressed_pixel_data_keeps_its_transfer_syntax() -> None:
    original = read(bundled("MR_small_jp2klossless.dcm"))
    out = roundtrip(deid(original))
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert out.PixelData == original.PixelData


def _all_elements(ds: Dataset) -> list[DataElement]:
    found = []
    for elem in ds:
        found.append(elem)
        if elem.VR == "SQ":
            for item in elem.value:
                found += _all_elements(item)
    return found


@pytest.mark.parametrize("source", ["synthetic", "CT_small.dcm", "test-SR.dcm", "rtplan.dcm"])
def test_every_value_written_is_valid_for_its_vr(source: str) -> None:
    original = instance() if source == "synthetic" else read(bundled(source))
    for options in (BASIC, EVERYTHING):
        for elem in _all_elements(roundtrip(deid(original, options))):
            if elem.VR == "SQ" or elem.tag.is_private:
                continue
            values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
            for value in filter(lambda value: value is not None, values):
                as_written = str(value) if elem.VR in ("DS", "IS", "PN") else value
                validate_value(elem.VR, as_written, config.RAISE)  # PS3.5 6.2: raises if not
            if elem.VR == "UI" and elem.value:
                assert UID(elem.value).is_valid, elem
