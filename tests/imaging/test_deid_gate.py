"""The leak gate as behaviour: it finds every planted identifier, says where, and can fail."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from services.imaging.deid import (
    Hit,
    IdentifierKind,
    Identifiers,
    LeakDetected,
    Options,
    check,
    deidentify,
    identifiers_of,
    scan,
)
from tests.imaging.test_deid_factory import (
    ACCESSION,
    BIRTH_DATE,
    FAMILY,
    KEY,
    OTHER_ID,
    PATIENT_ID,
    PSEUDONYM,
    SOP_A,
    STUDY_UID,
    bundled,
    instance,
    read,
    roundtrip,
    study,
)

NAME, PID, OTHER, ACC, BIRTH, UID = (
    IdentifierKind.NAME,
    IdentifierKind.PATIENT_ID,
    IdentifierKind.OTHER_PATIENT_ID,
    IdentifierKind.ACCESSION_NUMBER,
    IdentifierKind.BIRTH_DATE,
    IdentifierKind.UID,
)


def found(ds: Dataset, identifiers: Identifiers | None = None) -> set[tuple[str, str]]:
    return {(hit.path, hit.kind) for hit in scan(ds, identifiers or identifiers_of(instance()))}


def test_the_gate_finds_every_planted_identifier_and_says_where() -> None:
    _, b = study()
    assert found(b, identifiers_of(b)) >= {
        ("(0002,0003)", UID),  # file meta
        ("(0008,0018)", UID),
        ("(0008,0050)", ACC),
        ("(0008,1030)", NAME),
        ("(0008,1140)[0].(0008,1155)", UID),  # a reference to instance A
        ("(0009,1001)", NAME),  # private text
        ("(0010,0010)", NAME),
        ("(0010,0020)", PID),
        ("(0010,0030)", BIRTH),
        ("(0010,1002)[0].(0010,0020)", OTHER),
        ("(0011,1001)", PID),  # private UN bytes
        ("(0020,000D)", UID),
        ("(0020,000E)", UID),
        ("(0020,0052)", UID),
        ("(0020,4000)", NAME),
        ("(0020,4000)", BIRTH),  # written 14/05/1980
        ("(0040,0275)[0].(0008,0050)", ACC),
        ("(0040,0275)[0].(0032,1060)", NAME),
        ("(0040,A730)[0].(0040,A160)", NAME),
    }


def test_check_blocks_an_instance_that_was_not_de_identified() -> None:
    original = instance()
    with pytest.raises(LeakDetected) as leak:
        check(original, identifiers_of(original))
    assert leak.value.status == 409
    assert Hit("(0010,0010)", NAME, "PatientName") in leak.value.hits
    message = str(leak.value)
    for value in (FAMILY, PATIENT_ID, ACCESSION, BIRTH_DATE, STUDY_UID):
        assert value.lower() not in message.lower()


def test_check_lets_a_de_identified_instance_go() -> None:
    original = instance()
    check(
        deidentify(original, key=KEY, pseudonym=PSEUDONYM, options=Options()),
        identifiers_of(original),
    )


def test_the_study_identifiers_are_the_union_of_its_instances() -> None:
    a, b = study()
    merged = identifiers_of(a) | identifiers_of(b)
    assert SOP_A in merged.uids and SOP_A in identifiers_of(a).uids
    assert merged.patient_ids == {PATIENT_ID.lower()}
    assert merged.other_patient_ids == {OTHER_ID.lower()}
    assert merged.names == {"benali", "ahmed"}


@pytest.mark.parametrize(
    "text",
    ["born 19800514", "DOB 1980-05-14", "14/05/1980", "le 14.05.1980", "05/14/1980", "14-05-1980"],
)
def test_the_birth_date_is_found_in_its_usual_renderings(text: str) -> None:
    ds = Dataset()
    ds.ImageComments = text
    assert found(ds) == {("(0020,4000)", BIRTH)}


@pytest.mark.parametrize("text", ["19800515", "119800514", "1980-05-141", "Series 1980"])
def test_other_numbers_are_not_the_birth_date(text: str) -> None:
    ds = Dataset()
    ds.ImageComments = text
    assert found(ds) == set()


def test_a_date_attribute_equal_to_the_birth_date_is_only_a_hit_in_patients_birth_date() -> None:
    ds = Dataset()
    ds.StudyDate = BIRTH_DATE  # a shifted date may land on it by chance
    ds.PatientBirthDate = BIRTH_DATE
    assert found(ds) == {("(0010,0030)", BIRTH)}


def test_short_name_parts_match_whole_words_only() -> None:
    li = Dataset()
    li.PatientName = "Li^Wei"
    identifiers = identifiers_of(li)
    for text, hit in [("Mr_Li", True), ("LI WEI", True), ("li2", True), ("clinical weight", False)]:
        ds = Dataset()
        ds.ImageComments = text
        assert bool(scan(ds, identifiers)) is hit, text


def test_names_are_found_without_accents_or_case() -> None:
    jerome = Dataset()
    jerome.PatientName = "Buc^Jérôme"
    ds = Dataset()
    ds.StudyDescription = "IRM JEROME"
    assert {hit.kind for hit in scan(ds, identifiers_of(jerome))} == {NAME}


def test_an_id_is_found_inside_a_longer_token_of_letters_and_digits() -> None:
    numeric = Dataset()
    numeric.PatientID = "021234567"
    ds = Dataset()
    ds.ImageComments = "MRN021234567"
    assert found(ds, identifiers_of(numeric)) == {("(0020,4000)", PID)}


def test_ids_shorter_than_three_characters_are_not_looked_for() -> None:
    short = Dataset()
    short.PatientID = "42"
    assert identifiers_of(short).patient_ids == set()


def test_a_uid_is_found_in_text_but_not_inside_a_longer_uid() -> None:
    ds = Dataset()
    ds.ImageComments = f"see {STUDY_UID}"
    ds.StudyComments = f"see {STUDY_UID}.7"
    assert found(ds) == {("(0020,4000)", UID)}


def test_person_names_and_multi_values_are_read_value_by_value() -> None:
    ds = Dataset()
    ds.OperatorsName = ["Saidi^Nora", f"{FAMILY}^Ahmed"]
    ds.OtherPatientIDs = ["X1", PATIENT_ID]
    assert found(ds) == {("(0008,1070)", NAME), ("(0010,1000)", PID)}


def test_identifiers_deep_in_nested_sequences_are_found_with_their_path() -> None:
    ds = Dataset()
    inner = Dataset()
    inner.TextValue = f"for {FAMILY}"
    middle = Dataset()
    middle.ContentSequence = Sequence([Dataset(), inner])
    ds.ContentSequence = Sequence([middle])
    assert found(ds) == {("(0040,A730)[0].(0040,A730)[1].(0040,A160)", NAME)}


def test_a_preamble_that_carries_text_is_a_hit() -> None:
    ds = Dataset()
    ds.preamble = f"II*\x00{FAMILY}".encode().ljust(128, b"\x00")
    assert found(ds) == {("preamble", NAME)}


def test_pixel_data_is_not_read() -> None:
    ds = Dataset()
    ds.PixelData = PATIENT_ID.encode() * 2
    assert found(ds) == set()


def test_a_bundled_file_shows_its_identifiers_and_its_de_identified_copy_none() -> None:
    original = read(bundled("CT_small.dcm"))
    identifiers = identifiers_of(original)
    assert {hit.kind for hit in scan(original, identifiers)} >= {NAME, PID, UID}
    out = deidentify(original, key=KEY, pseudonym=PSEUDONYM, options=Options())
    assert scan(out, identifiers) == []


def test_an_id_of_letters_and_digits_is_found_glued_to_other_text() -> None:
    ds = Dataset()
    ds.ImageComments = f"ref{ACCESSION}x"
    ds.StudyComments = "80212345"
    numeric = Dataset()
    numeric.PatientID = "0212345"
    assert found(ds, identifiers_of(instance()) | identifiers_of(numeric)) == {("(0020,4000)", ACC)}


def test_read_from_a_file_every_planted_identifier_is_found_as_in_memory() -> None:
    """Read from a file, elements stay raw until decoded, and the gate decodes only the VRs
    that can hold an identifier: the hits must be those of the same dataset in memory."""
    original = instance(references=SOP_A)
    nested = Dataset()
    nested.RescaleIntercept, nested.InstanceNumber, nested.Rows = "-1024", "7", 4
    nested.ImageComments = f"seen by {FAMILY} ({PATIENT_ID})"
    original.ReferencedImageSequence[0].ReferencedFrameNumber = "1"
    original.AnatomicRegionSequence = Sequence([nested])
    from_file = roundtrip(original)

    assert identifiers_of(from_file) == identifiers_of(original)
    assert {hit.path for hit in scan(from_file, identifiers_of(original))} == {
        hit.path for hit in scan(original, identifiers_of(original))
    }
    assert any(
        hit.path.startswith("(0008,2218)[0].") for hit in scan(from_file, identifiers_of(original))
    )
