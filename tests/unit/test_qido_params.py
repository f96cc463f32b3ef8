"""QIDO-RS query parameters as a pure rule: what a search asks, or which parameter is invalid."""

from __future__ import annotations

import pytest

from services.imaging.dicomweb.qido_params import Level, parse
from services.imaging.stores import SeriesSummary, StudySummary
from shared.problems import BadRequest

STUDY = StudySummary(
    study_uid="1.2.3",
    patient_id="JISR-0001",
    patient_name="Doe^Jane",
    study_date="20240105",
    accession_number="ACC-A",
    study_description="Chest CT",
    modalities=("CT", "MR"),
    series_count=2,
    instance_count=5,
)
MR = SeriesSummary("1.2.3", "1.2.3.2", "MR", 2, "T1", 2)


def study_search(query: list[tuple[str, str]]) -> bool:
    return parse(query, [Level.STUDY]).matches_study(STUDY)


def test_a_key_by_tag_is_the_key_by_keyword() -> None:
    assert parse([("00100020", "JISR-*")], [Level.STUDY]).keys == {"PatientID": "JISR-*"}
    assert study_search([("00100020", "JISR-*")])
    assert not study_search([("PatientID", "OTHER")])


def test_lists_take_commas_or_backslashes_and_match_any_item() -> None:
    assert study_search([("StudyInstanceUID", "1.2.9\\1.2.3")])
    assert study_search([("0020000D", "1.2.9,1.2.3")])
    assert study_search([("ModalitiesInStudy", "US,mr")])
    assert not study_search([("ModalitiesInStudy", "US\\XA")])
    assert parse([("Modality", "MR,")], [Level.SERIES]).single("Modality") == "MR"


def test_dates_match_by_range_and_wildcards_by_pattern() -> None:
    assert study_search([("StudyDate", "20240101-20241231"), ("StudyDescription", "*ct")])
    assert study_search([("StudyDate", "-20240105")])
    assert not study_search([("StudyDate", "20240106-")])


def test_paging_fuzzy_and_return_keys_are_not_matching_keys() -> None:
    search = parse(
        [
            ("limit", "101"),
            ("offset", "0"),
            ("fuzzymatching", "true"),
            ("includefield", "00081030,00080060"),
            ("includefield", "all"),
            ("PatientBirthDate", ""),
            ("00400275.00400009", ""),
        ],
        [Level.STUDY],
    )
    assert (search.limit, search.offset, search.fuzzy, search.keys) == (101, 0, True, {})


def test_series_keys_apply_to_series_and_only_where_the_resource_spans_them() -> None:
    assert parse([("SeriesNumber", "2")], [Level.SERIES]).matches_series(MR)
    assert not parse([("Modality", "CT")], [Level.SERIES]).matches_series(MR)
    with pytest.raises(BadRequest) as refused:
        parse([("Modality", "CT")], [Level.STUDY])
    assert refused.value.extra["parameter"] == "Modality"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("StudyDate", "2024-13-45"),
        ("StudyDate", "banana"),
        ("StudyDate", "20240229-20230230"),
        ("StudyInstanceUID", "1.2.3,not a uid"),
        ("SeriesNumber", "2.5"),
        ("NotAnAttribute", ""),
        ("includefield", "00081030,Nope"),
        ("limit", "-1"),
        ("fuzzymatching", "yes"),
    ],
)
def test_an_invalid_parameter_is_named(key: str, value: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse([(key, value)], [Level.STUDY, Level.SERIES])
    assert refused.value.extra["parameter"] == key
    assert key in str(refused.value.detail)
