"""What of a patient a partner may see, by the coverage line's data terms.

The patient record never leaves the origin institution; a partner sees a view
of it. Identified: everything. Pseudonymised: a stable per-agreement pseudonym
(keyed hash, no mapping table), sex and year of birth. Anonymised: sex and a
ten-year age band. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from shared.entitlements.model import Identification
from shared.pseudonyms import pseudonym


@dataclass(frozen=True, slots=True)
class PatientView:
    identification: Identification
    pseudonym: str | None
    local_id: str | None
    name: str | None
    sex: str | None
    birth_date: date | None
    birth_year: int | None
    age_band: str | None


def age_band(birth: date, today: date) -> str:
    age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
    low = max(0, age // 10 * 10)
    return f"{low}-{low + 9}"


def view(
    *,
    identification: Identification,
    secret: bytes,
    agreement_id: int | None,
    patient_id: int,
    local_id: str,
    name: str,
    sex: str,
    birth_date: date,
    today: date,
) -> PatientView:
    if identification is Identification.IDENTIFIED:
        return PatientView(
            identification,
            None,
            local_id,
            name,
            sex,
            birth_date,
            birth_date.year,
            age_band(birth_date, today),
        )
    if identification is Identification.PSEUDONYMISED:
        alias = pseudonym(secret, agreement_id or 0, patient_id)
        return PatientView(
            identification,
            alias,
            None,
            None,
            sex,
            None,
            birth_date.year,
            age_band(birth_date, today),
        )
    return PatientView(
        identification, None, None, None, sex, None, None, age_band(birth_date, today)
    )
