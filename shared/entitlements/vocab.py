"""Controlled vocabularies: specialties and service kinds, labelled in ar/fr/en with SNOMED CT codes.

The data lives in `vocabulary.json`; each SNOMED CT code there was checked
against published value sets (HL7 c80 practice codes and others).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from shared.i18n import DEFAULT_LANGUAGE, translate


@dataclass(frozen=True, slots=True)
class Term:
    code: str
    snomed: str | None
    labels: dict[str, str]

    def label(self, lang: str) -> str:
        return self.labels.get(lang) or self.labels[DEFAULT_LANGUAGE]


@cache
def _load() -> dict[str, dict[str, Term]]:
    raw = json.loads(Path(__file__).with_name("vocabulary.json").read_text(encoding="utf-8"))
    return {
        kind: {t["code"]: Term(t["code"], t.get("snomed"), t["labels"]) for t in raw[kind]}
        for kind in ("specialties", "service_kinds")
    }


def specialties() -> dict[str, Term]:
    return _load()["specialties"]


def service_kinds() -> dict[str, Term]:
    return _load()["service_kinds"]


def is_specialty(code: str) -> bool:
    return code in specialties()


def localize(key: str, value: Any, lang: str) -> Any:
    """A message parameter as the reader should see it: codes of known kinds become words."""
    if key == "service" and value in service_kinds():
        return service_kinds()[value].label(lang)
    if key == "specialty" and value in specialties():
        return specialties()[value].label(lang)
    if key in ("period", "urgency", "outcome", "schedule_kind"):
        return translate(f"{key}.{value}", lang)
    if key == "languages" and isinstance(value, str):  # "ar, fr" becomes the languages' names
        names = (translate(f"lang.{code.strip()}", lang) for code in value.split(","))
        return translate("list.sep", lang).join(names)
    return value
