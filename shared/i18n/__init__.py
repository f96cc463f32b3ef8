"""Messages in Arabic, French and English.

Catalogues are flat JSON files, one per language, keyed by dotted message ids;
a topic may keep its messages in a folder of its own (`pages/fr.json`).
A missing translation falls back to English, and a missing id to the id itself,
so an untranslated message is visible rather than fatal.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES: tuple[str, ...] = ("en", "fr", "ar")
DEFAULT_LANGUAGE = "en"
RTL_LANGUAGES = frozenset({"ar"})

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "RTL_LANGUAGES", "negotiate", "translate"]


@cache
def _catalogue(lang: str) -> dict[str, str]:
    """`<lang>.json` here, merged with `<topic>/<lang>.json` of each topic folder (pages, mail...)."""
    folder = Path(__file__).parent
    data: dict[str, str] = {}
    for path in [folder / f"{lang}.json", *sorted(folder.glob(f"*/{lang}.json"))]:
        data.update(json.loads(path.read_text(encoding="utf-8")))
    return data


def translate(key: str, lang: str = DEFAULT_LANGUAGE, /, **params: Any) -> str:
    lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
    template = _catalogue(lang).get(key) or _catalogue(DEFAULT_LANGUAGE).get(key) or key
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return template


def negotiate(accept_language: str | None, preferred: tuple[str, ...] = ()) -> str:
    """Pick a language: the request's Accept-Language first, then the user's own languages."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        primary = tag.strip().split("-")[0].lower()
        if primary in LANGUAGES and weight > 0:
            weighted.append((-weight, index, primary))
    if weighted:
        return min(weighted)[2]
    return next((lang for lang in preferred if lang in LANGUAGES), DEFAULT_LANGUAGE)
