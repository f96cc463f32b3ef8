"""A message to show a user later, in their language: an i18n key and its parameters.

Stored as `{"key": ..., "params": {...}}` (JSON), rendered when read, so a
French coordinator and an Arabic physician each read the same routing reasons
in their own words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.entitlements import vocab
from shared.entitlements.decide import Reason
from shared.i18n import translate


@dataclass(frozen=True, slots=True)
class Message:
    key: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def text(self, lang: str) -> str:
        words = {k: vocab.localize(k, v, lang) for k, v in self.params.items()}
        return translate(self.key, lang, **words)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "params": dict(self.params)}

    @classmethod
    def from_reason(cls, reason: Reason) -> Message:
        key = f"decision.{reason.rule}"
        if reason.rule == "quota_exhausted" and reason.params.get("period") == "term":
            key += "_term"
        return cls(key, dict(reason.params))


def render(stored: Iterable[Any], lang: str) -> list[str]:
    """Stored messages (dicts) as text; plain strings pass through unchanged."""
    out = []
    for item in stored:
        if isinstance(item, Mapping) and "key" in item:
            out.append(Message(str(item["key"]), dict(item.get("params") or {})).text(lang))
        else:
            out.append(str(item))
    return out
