"""Errors of the de-identification engine and of the leak gate.

    DeidError                    422  base: nothing was produced
    ├── UnusableInput            422  a dataset the engine cannot de-identify as given
    │   └── NestingTooDeep       422  sequences nested deeper than `MAX_DEPTH`
    ├── BurnedInAnnotationRefused 403 pixels may carry identifying text (rule `burned_in_annotation`)
    └── LeakDetected             409  the gate found an original identifier in an outgoing instance

The package is pure, so these are plain exceptions and not `shared.problems`
errors; each carries the `status`, `slug` (and, for a refusal, `rule`) with
which the sharing layer re-raises it as problem+json. Messages never contain
the identifiers themselves: they end up in logs and problem bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.imaging.deid.gate import Hit

__all__ = [
    "BurnedInAnnotationRefused",
    "DeidError",
    "LeakDetected",
    "NestingTooDeep",
    "UnusableInput",
]


class DeidError(Exception):
    """Base of every error the de-identification package raises on data."""

    status = 422
    slug = "deid_failed"


class UnusableInput(DeidError):
    """The dataset cannot be de-identified as given (missing UIDs, undecodable values, ...)."""

    slug = "deid_unusable_input"


class NestingTooDeep(UnusableInput):
    """Sequences are nested deeper than the engine walks (instead of a RecursionError)."""

    slug = "deid_nesting_too_deep"

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(f"sequences nested deeper than {limit} levels at {path}")
        self.path = path
        self.limit = limit


class BurnedInAnnotationRefused(DeidError):
    """PS3.15 E.1.1: pixel data may carry burned-in identifying text, and the line does not allow it."""

    status = 403
    slug = "burned_in_annotation_refused"
    rule = "burned_in_annotation"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LeakDetected(DeidError):
    """The gate found original identifiers in an outgoing instance; the share must not go."""

    status = 409
    slug = "deid_leak_detected"

    def __init__(self, hits: Sequence[Hit]) -> None:
        self.hits: tuple[Hit, ...] = tuple(hits)
        shown = ", ".join(f"{hit.kind} at {hit.path}" for hit in self.hits[:10])
        more = f" and {len(self.hits) - 10} more" if len(self.hits) > 10 else ""
        super().__init__(f"{len(self.hits)} original identifier(s) found: {shown}{more}")
