"""What the engine refuses, and how: typed errors, never a half-cleaned dataset."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from services.imaging.deid import (
    MAX_DEPTH,
    BurnedInAnnotationRefused,
    DeidError,
    NestingTooDeep,
    Options,
    UnusableInput,
    check_burned_in,
    deidentify,
    identifiers_of,
    scan,
)
from tests.imaging.test_deid_factory import (
    KEY,
    PSEUDONYM,
    bundled,
    instance,
    nested,
    read,
    ultrasound,
)


def deid(ds: Dataset, options: Options = Options()) -> Dataset:
    return deidentify(ds, key=KEY, pseudonym=PSEUDONYM, options=options)


def test_an_ultrasound_without_burned_in_annotation_is_refused() -> None:
    with pytest.raises(BurnedInAnnotationRefused, match="ultrasound") as refused:
        deid(ultrasound(burned_in=None))
    assert refused.value.status == 403
    assert refused.value.rule == "burned_in_annotation"


def test_any_image_that_says_it_has_burned_in_annotation_is_refused() -> None:
    ct = instance()
    ct.BurnedInAnnotation = "YES"
    with pytest.raises(BurnedInAnnotationRefused, match="YES"):
        deid(ct)
    with pytest.raises(BurnedInAnnotationRefused):
        deid(ultrasound(burned_in="YES"))


def test_a_secondary_capture_without_burned_in_annotation_is_refused() -> None:
    secondary_capture = read(bundled("JPEG2000.dcm"))  # SC Image Storage, no (0028,0301)
    assert "BurnedInAnnotation" not in secondary_capture
    with pytest.raises(BurnedInAnnotationRefused, match="Secondary Capture"):
        deid(secondary_capture)


def test_a_line_that_allows_burned_in_text_lets_them_through() -> None:
    allowed = Options(allow_burned_in=True)
    for image in (ultrasound(None), ultrasound("YES"), read(bundled("JPEG2000.dcm"))):
        original = identifiers_of(image)
        out = deid(image, allowed)
        assert out.PatientIdentityRemoved == "YES"
        assert scan(out, original) == []


def test_an_ultrasound_that_says_no_burned_in_annotation_goes() -> None:
    check_burned_in(ultrasound(burned_in="NO"), Options())
    assert deid(ultrasound(burned_in="NO")).Modality == "US"


def test_a_ct_without_the_attribute_is_not_presumed_to_carry_text() -> None:
    ct = instance()
    del ct.BurnedInAnnotation
    check_burned_in(ct, Options())


def test_nesting_beyond_the_limit_is_a_typed_error_not_a_recursion_error() -> None:
    too_deep = nested(MAX_DEPTH + 5)
    with pytest.raises(NestingTooDeep) as refused:
        deid(too_deep)
    assert isinstance(refused.value, UnusableInput)
    assert refused.value.path.startswith("(0040,A730)[0].(0040,A730)[0].")
    with pytest.raises(NestingTooDeep):
        scan(too_deep, identifiers_of(instance()))


def test_nesting_within_the_limit_is_walked_to_the_leaf() -> None:
    out = deid(nested(MAX_DEPTH - 2))
    item = out
    for _ in range(MAX_DEPTH - 2):
        item = item.ContentSequence[0]
    assert item.TextValue == "leaf"


def test_an_instance_without_sop_instance_uid_is_unusable() -> None:
    ds = instance()
    del ds.SOPInstanceUID
    with pytest.raises(UnusableInput, match="SOP Instance UID") as refused:
        deid(ds)
    assert isinstance(refused.value, DeidError) and refused.value.status == 422


def test_encapsulated_pixels_with_no_transfer_syntax_are_unusable() -> None:
    ds = read(bundled("MR_small_jp2klossless.dcm"))
    del ds.file_meta
    with pytest.raises(UnusableInput, match="transfer syntax"):
        deid(ds)


@pytest.mark.parametrize(
    ("key", "pseudonym"),
    [
        (b"short", PSEUDONYM),
        (KEY, ""),
        (KEY, " padded"),
        (KEY, "a\\b"),
        (KEY, "x" * 65),
        (KEY, "A^B"),
    ],
)
def test_a_weak_key_or_a_malformed_pseudonym_is_a_programming_error(
    key: bytes, pseudonym: str
) -> None:
    with pytest.raises(ValueError):
        deidentify(instance(), key=key, pseudonym=pseudonym, options=Options())
