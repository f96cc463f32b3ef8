"""The pure rules under the engine: Table E.1-1, keyed UIDs, date shifts, matching, options."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from pydicom.datadict import dictionary_keyword
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

import services.imaging.deid as deid
from services.imaging.deid import TABLE, Action, Options, action_for, remap_uid, shift_days
from services.imaging.deid.dates import shift_da, shift_dt
from services.imaging.deid.matching import Identifiers, Matcher, normalize
from services.imaging.deid.profile import method_codes
from services.imaging.deid.uids import is_remappable

KEY = b"0123456789abcdef0123456789abcdef"


def test_the_public_surface_is_what_all_says() -> None:
    assert sorted(deid.__all__) == sorted(set(deid.__all__))
    for name in deid.__all__:
        assert hasattr(deid, name), name
    public = {name for name in vars(deid) if not name.startswith("_")}
    modules = {
        "bulk",
        "burned_in",
        "dates",
        "engine",
        "errors",
        "gate",
        "matching",
        "options",
        "profile",
        "table",
        "uids",
    }
    assert public - modules == set(deid.__all__)


# --- Table E.1-1 ---------------------------------------------------------------------------


def test_the_table_holds_every_fixed_tag_row_of_table_e1_1() -> None:
    assert len(TABLE) == 617
    for tag, rule in TABLE.items():
        assert dictionary_keyword(tag) == rule.keyword
        assert rule.basic in {"D", "Z", "X", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
        options = (rule.retain_dates_shifted, rule.retain_patient_characteristics,
                   rule.retain_device_identity, rule.clean_descriptors)  # fmt: skip
        assert set(options) <= {"", "K", "C"}


def test_the_table_covers_patient_study_series_and_equipment_identity() -> None:
    basic = Counter(rule.basic for rule in TABLE.values())
    assert basic["X"] > 350 and basic["U"] > 50 and basic["D"] > 80
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDsSequence",
                    "AccessionNumber", "StudyID", "InstitutionName", "ReferringPhysicianName",
                    "StationName", "DeviceSerialNumber", "OperatorsName", "ContentSequence",
                    "ReferencedImageSequence", "SourceImageSequence", "RequestAttributesSequence",
                    "PerformedProcedureStepDescription", "FrameOfReferenceUID"):  # fmt: skip
        assert any(rule.keyword == keyword for rule in TABLE.values()), keyword


@pytest.mark.parametrize(
    ("keyword", "options", "action"),
    [
        ("PatientName", Options(), Action.EMPTY),
        ("PatientID", Options(), Action.EMPTY),  # Z/D
        ("StudyDate", Options(), Action.EMPTY),
        ("StudyDate", Options(retain_dates_shifted=True), Action.CLEAN),
        ("SeriesDate", Options(), Action.REMOVE),  # X/D
        ("AcquisitionDateTime", Options(), Action.EMPTY),  # X/Z/D
        ("PatientBirthDate", Options(retain_dates_shifted=True), Action.EMPTY),  # no option column
        ("PatientSex", Options(), Action.EMPTY),
        ("PatientSex", Options(retain_patient_characteristics=True), Action.KEEP),
        ("PatientWeight", Options(), Action.REMOVE),
        ("DeviceSerialNumber", Options(), Action.EMPTY),
        ("DeviceSerialNumber", Options(retain_device_identity=True), Action.KEEP),
        ("StudyDescription", Options(), Action.REMOVE),
        ("StudyDescription", Options(clean_descriptors=True), Action.CLEAN),
        ("ReferencedImageSequence", Options(), Action.REPLACE_UID),  # X/Z/U*
        ("SOPInstanceUID", Options(), Action.REPLACE_UID),
        ("ContentSequence", Options(), Action.DUMMY),
        ("Allergies", Options(retain_patient_characteristics=True), Action.CLEAN),
        # Retain Device Identity says K, Retain Longitudinal Modified Dates says C: C wins
        ("DateOfLastCalibration", Options(retain_device_identity=True), Action.KEEP),
        (
            "DateOfLastCalibration",
            Options(retain_device_identity=True, retain_dates_shifted=True),
            Action.CLEAN,
        ),
    ],
)
def test_each_attribute_gets_its_table_action_under_the_options(
    keyword: str, options: Options, action: Action
) -> None:
    tag = next(tag for tag, rule in TABLE.items() if rule.keyword == keyword)
    assert action_for(tag, options) is action


def test_attributes_the_table_does_not_list_have_no_action() -> None:
    assert action_for(0x00080060, Options()) is None  # Modality


def test_method_codes_follow_the_options_in_cid_7050() -> None:
    assert method_codes(Options()) == [("113100", "Basic Application Confidentiality Profile")]
    codes = [
        code for code, _ in method_codes(Options(retain_dates_shifted=True, clean_descriptors=True))
    ]
    assert codes == ["113100", "113105", "113107"]


# --- keyed UIDs ----------------------------------------------------------------------------


def test_a_keyed_uid_is_a_valid_2_25_uuid_uid() -> None:
    new = remap_uid("1.2.826.0.1.3680043.10.1137.1.1", KEY)
    assert UID(new).is_valid and new.startswith("2.25.") and len(new) <= 64
    as_uuid = uuid.UUID(int=int(new[5:]))
    assert as_uuid.version == 8 and as_uuid.variant == uuid.RFC_4122


def test_a_keyed_uid_depends_on_the_uid_and_the_key_only() -> None:
    uid = "1.2.3.4.5"
    assert remap_uid(uid, KEY) == remap_uid(uid, KEY) == remap_uid(uid + " ", KEY)
    assert remap_uid(uid, KEY) != remap_uid("1.2.3.4.6", KEY)
    assert remap_uid(uid, KEY) != remap_uid(uid, KEY[::-1])
    many = {remap_uid(f"1.2.3.{n}", KEY) for n in range(5000)}
    assert len(many) == 5000


def test_class_and_registry_uids_are_not_replaced() -> None:
    assert not is_remappable(0x00080016, "1.2.840.113619.4.26")  # a vendor's private SOP class
    assert not is_remappable(0x00081155, CTImageStorage)  # a registry UID wherever it is
    assert not is_remappable(0x00020010, ExplicitVRLittleEndian)
    assert not is_remappable(0x00200052, "1.2.840.10008.1.4.1.1")  # well-known frame of reference
    assert is_remappable(0x00081155, "1.2.826.0.1.3680043.10.1137.1.4.1")
    assert not is_remappable(0x00081155, "")


# --- date shift ----------------------------------------------------------------------------


def test_the_shift_is_between_one_day_and_a_year_back_and_spread() -> None:
    shifts = [shift_days(KEY, f"P{n}") for n in range(2000)]
    assert all(-365 <= days <= -1 for days in shifts)
    assert len(set(shifts)) > 300


@pytest.mark.parametrize(
    ("value", "days", "shifted"),
    [
        ("20240301", -1, "20240229"),  # leap day
        ("20250101", -365, "20240102"),
        ("2024.03.01", -1, "20240229"),  # ACR-NEMA style
        ("", -10, ""),
        ("2024031", -1, None),
        ("20240230", -1, None),
        ("yesterday", -1, None),
    ],
)
def test_da_values_move_by_whole_days(value: str, days: int, shifted: str | None) -> None:
    assert shift_da(value, days) == shifted


@pytest.mark.parametrize(
    ("value", "shifted"),
    [
        ("20240117102233.500000+0100", "20240107102233.500000+0100"),
        ("20240117", "20240107"),
        ("2024011710", "2024010710"),
        ("202401", "202312"),
        ("2024", "2023"),
        ("2024+0300", "2023+0300"),
        ("20240117 garbage", None),
        ("2024011710223", None),
    ],
)
def test_dt_values_move_their_date_and_keep_time_offset_and_precision(
    value: str, shifted: str | None
) -> None:
    assert shift_dt(value, -10) == shifted


# --- matching ------------------------------------------------------------------------------


def test_normal_form_drops_case_accents_harakat_and_tatweel() -> None:
    assert normalize("Jérôme") == "jerome"
    assert normalize("قَبّاني") == normalize("قبـاني") == normalize("قباني")
    assert normalize("\u200fقباني\u200e") == normalize("قباني")


def test_clean_removes_identifiers_and_tidies_spaces() -> None:
    matcher = Matcher(
        Identifiers(names=frozenset({"benali", "ahmed"}), patient_ids=frozenset({"jsr-884213"}))
    )
    assert matcher.clean("CT  AHMED  Benali (JSR-884213) thorax") == "CT () thorax"
    assert matcher.clean("Bénali's scan") == "'s scan"
    assert matcher.clean("nothing here") == "nothing here"


# --- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry", [("", 0x00090010), ("ACME ", 0x00090010), ("ACME", 0x00080010), ("ACME", 0x00091010)]
)
def test_a_safe_private_tag_must_name_a_creator_and_an_odd_group_element(
    entry: tuple[str, int],
) -> None:
    with pytest.raises(ValueError):
        Options(safe_private_tags=frozenset({entry}))


def test_a_safe_private_tag_matches_whatever_block_the_creator_reserved() -> None:
    options = Options(safe_private_tags=frozenset({("ACME 1.0", 0x00090002)}))
    assert options.is_safe_private("ACME 1.0", 0x00091002)
    assert options.is_safe_private("ACME 1.0 ", 0x00094202)
    assert not options.is_safe_private("ACME 1.0", 0x00091003)
    assert not options.is_safe_private("OTHER", 0x00091002)
