"""Character sets: text is decoded before it is cleaned, and leaves as UTF-8.

pydicom's bundled charset files: ISO_IR 127 (Arabic), ISO 2022 (Japanese, Korean),
GB18030 and UTF-8 (Chinese), and the single-byte Latin, Greek, Cyrillic and Hebrew sets.
They are secondary captures with no Burned In Annotation, so the line here allows them.
"""

from __future__ import annotations

import pytest
from pydicom.charset import convert_encodings
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from services.imaging.deid import (
    IdentifierKind,
    LeakDetected,
    Options,
    check,
    deidentify,
    identifiers_of,
    scan,
)
from tests.imaging.test_deid_factory import KEY, PSEUDONYM, charset_file, read, roundtrip

ALLOW = Options(allow_burned_in=True)
CLEAN = Options(allow_burned_in=True, clean_descriptors=True)
NAMED_FILES = [
    "chrArab.dcm",
    "chrH31.dcm",
    "chrH32.dcm",
    "chrI2.dcm",
    "chrX1.dcm",
    "chrX2.dcm",
    "chrJapMulti.dcm",
    "chrKoreanMulti.dcm",
    "chrFren.dcm",
    "chrGerm.dcm",
    "chrGreek.dcm",
    "chrRuss.dcm",
    "chrHbrw.dcm",
]


def deid(ds: Dataset, options: Options = ALLOW) -> Dataset:
    return deidentify(ds, key=KEY, pseudonym=PSEUDONYM, options=options)


def arabic(**planted: str) -> Dataset:
    """chrArab.dcm (Patient's Name قباني^لنزار in ISO_IR 127) with `planted` text,
    written and read back so the planted text is decoded from ISO_IR 127 bytes too."""
    ds = read(charset_file("chrArab.dcm"))
    for keyword, text in planted.items():
        setattr(ds, keyword, text)
    back = roundtrip(ds)
    assert back.SpecificCharacterSet == "ISO_IR 127"
    return back


@pytest.mark.parametrize("name", NAMED_FILES)
def test_names_in_every_character_set_are_decoded_and_removed(name: str) -> None:
    original = read(charset_file(name))
    identifiers = identifiers_of(original)
    assert identifiers.names, "the name parts are read from the decoded Patient's Name"
    assert IdentifierKind.NAME in {hit.kind for hit in scan(original, identifiers)}
    out = roundtrip(deid(original))
    assert out.SpecificCharacterSet == "ISO_IR 192"
    assert str(out.PatientName) == PSEUDONYM
    assert scan(out, identifiers) == []


def test_arabic_name_parts_are_read_from_iso_ir_127() -> None:
    identifiers = identifiers_of(arabic())
    assert identifiers.names == {"قباني", "لنزار"}
    assert "iso_ir_127" in identifiers.encodings


def test_an_arabic_name_written_in_image_comments_is_caught_by_the_gate() -> None:
    original = arabic(ImageComments="صورة الصدر للمريض قباني")
    hits = scan(original, identifiers_of(original))
    assert any(hit.path == "(0020,4000)" and hit.kind == "name" for hit in hits)


def test_the_gate_finds_an_arabic_name_written_with_vowel_marks_or_attached_words() -> None:
    original = arabic(ImageComments="للمريض قَبّاني", StudyComments="وقباني")
    paths = {hit.path for hit in scan(original, identifiers_of(original))}
    assert {"(0020,4000)", "(0032,4000)"} <= paths


def test_arabic_descriptions_are_cleaned_and_leave_as_utf8() -> None:
    original = arabic(ImageComments="صورة الصدر للمريض قباني", StudyDescription="تصوير الصدر")
    out = roundtrip(deid(original, CLEAN))
    assert out.SpecificCharacterSet == "ISO_IR 192"
    assert out.StudyDescription == "تصوير الصدر"
    assert out.ImageComments == "صورة الصدر للمريض"
    assert scan(out, identifiers_of(original)) == []


def test_without_clean_descriptors_arabic_comments_are_removed() -> None:
    out = deid(arabic(ImageComments="صورة الصدر للمريض قباني"))
    assert "ImageComments" not in out


def test_an_arabic_name_in_a_safe_private_block_is_caught_in_its_own_encoding() -> None:
    original = arabic()
    block = original.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x10, "UN", "ملف قباني".encode("iso8859_6"))  # raw ISO_IR 127 bytes
    out = deid(
        original,
        Options(allow_burned_in=True, safe_private_tags=frozenset({("ACME 1.0", 0x00290010)})),
    )
    with pytest.raises(LeakDetected) as leak:
        check(out, identifiers_of(original))
    assert [(hit.path, hit.kind) for hit in leak.value.hits] == [("(0029,1010)", "name")]
    assert "قباني" not in str(leak.value)  # hits say where and what kind, never the value


def test_iso_2022_japanese_text_is_cleaned_of_the_name_in_all_three_scripts() -> None:
    original = read(charset_file("chrH31.dcm"))  # Yamada^Tarou=山田^太郎=やまだ^たろう
    original.ImageComments = "山田さんの画像 (Yamada)"
    original = roundtrip(original)
    assert list(original.SpecificCharacterSet) == ["", "ISO 2022 IR 87"]
    identifiers = identifiers_of(original)
    assert {hit.path for hit in scan(original, identifiers)} >= {"(0010,0010)", "(0020,4000)"}
    out = roundtrip(deid(original, CLEAN))
    assert out.ImageComments == "さんの画像 ()"
    assert scan(out, identifiers) == []


def test_text_in_nested_items_is_decoded_with_the_inherited_character_set() -> None:
    original = read(charset_file("chrArab.dcm"))
    item = Dataset()
    item.RequestedProcedureDescription = "أشعة قباني"
    original.RequestAttributesSequence = Sequence([item])
    original = roundtrip(original)
    identifiers = identifiers_of(original)
    assert any(hit.path == "(0040,0275)[0].(0032,1060)" for hit in scan(original, identifiers))
    out = roundtrip(deid(original, CLEAN))
    assert out.RequestAttributesSequence[0].RequestedProcedureDescription == "أشعة"


def test_bytes_are_read_loosely_in_each_original_character_set() -> None:
    original = read(charset_file("chrRuss.dcm"))
    assert convert_encodings(original.SpecificCharacterSet) == ["iso_ir_144"]
    name = str(original.PatientName)
    block = original.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x10, "UN", name.encode("iso8859_5"))
    hits = scan(original, identifiers_of(original))
    assert any(hit.path == "(0029,1010)" for hit in hits)


def test_an_item_with_its_own_character_set_is_decoded_with_it_and_leaves_as_utf8() -> None:
    original = read(charset_file("chrSQEncoding.dcm"))  # item in ISO 2022 IR 13 / IR 87
    original.SOPClassUID = original.file_meta.MediaStorageSOPClassUID
    original.SOPInstanceUID = original.file_meta.MediaStorageSOPInstanceUID
    original.RequestedProcedureCodeSequence[0].CodeMeaning = "山田の検査"
    original = roundtrip(original)
    identifiers = identifiers_of(original)
    assert {"山田", "太郎"} <= identifiers.names  # read from the item's Patient's Name
    assert {hit.path for hit in scan(original, identifiers)} >= {
        "(0032,1064)[0].(0008,0104)",
        "(0032,1064)[0].(0010,0010)",
    }
    out = roundtrip(deid(original, CLEAN))
    item = out.RequestedProcedureCodeSequence[0]
    assert "SpecificCharacterSet" not in item
    assert item.CodeMeaning == "の検査"
    assert item.PatientName == ""
    assert scan(out, identifiers) == []
