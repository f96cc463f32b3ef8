"""Which PS3.15 Annex E options a coverage line selects (PS3.15 E.3).

`Options()` with no arguments is the Basic Application Level Confidentiality
Profile alone. Each flag adds one option of Table E.1-1; `allow_burned_in` and
`safe_private_tags` are the line's answers to the two questions the profile
leaves to the application (E.1.1 burned-in annotation, E.3.10 safe private).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Options", "SafePrivateTag"]

# (private creator, 0xGGGG00EE): the private group GGGG and the element offset EE within
# the creator's block, as PS3.15 Table E.3.10-1 writes them, e.g. (0019,xx23) GEMS_ACQU_01
# is ("GEMS_ACQU_01", 0x00190023).
SafePrivateTag = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Options:
    """The data terms of one coverage line, as de-identification options.

    - `retain_dates_shifted`: Retain Longitudinal Temporal Information with
      Modified Dates (E.3.6): dates are shifted by a per-patient number of days
      instead of being removed.
    - `retain_patient_characteristics`: Retain Patient Characteristics (E.3.7):
      sex, age, size, weight, ethnic group, smoking and pregnancy status.
    - `retain_device_identity`: Retain Device Identity (E.3.8): serial numbers,
      station names, device UIDs and labels.
    - `clean_descriptors`: Clean Descriptors (E.3.5): the descriptions and
      comments of the option's column (Study and Series Description, Image
      Comments, Protocol Name, Request Attributes Sequence...) are kept, with
      every occurrence of the study's identifiers (name words, patient and
      other IDs, accession number, birth date as commonly written, original
      UIDs) cut out and spaces tidied: "CT thorax Ahmed Benali" becomes "CT
      thorax". Nothing else is rewritten: a name the study does not carry
      (a relative's, a physician's) stays. Without the option they are removed.
    - `allow_burned_in`: accept images that may carry burned-in identifying text.
    - `safe_private_tags`: private attributes known to hold no identity (E.3.10).
    """

    retain_dates_shifted: bool = False
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    clean_descriptors: bool = False
    allow_burned_in: bool = False
    safe_private_tags: frozenset[SafePrivateTag] = frozenset()

    def __post_init__(self) -> None:
        for entry in self.safe_private_tags:
            creator, tag = entry
            group, element = tag >> 16, tag & 0xFFFF
            if (
                not creator
                or creator != creator.strip()
                or not group % 2
                or element > 0xFF
                or tag > 0xFFFFFFFF
            ):
                raise ValueError(
                    f"safe private tag {entry!r} is not (creator, 0xGGGG00EE) with an odd group"
                )

    def is_safe_private(self, creator: str, tag: int) -> bool:
        """Is the private element `tag`, reserved by `creator`, on the line's safe list?"""
        return (creator.strip(), tag & 0xFFFF00FF) in self.safe_private_tags
