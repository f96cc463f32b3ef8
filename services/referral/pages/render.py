"""Rendering pages: the Jinja2 environment, words in the page language, dates in the reader's zone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Request
from fastapi.responses import Response

from shared import messages, pages
from shared.entitlements import vocab
from shared.i18n import LANGUAGES
from shared.identity.deps import Caller
from shared.problems import EntitlementRefused, JisrError

TEMPLATES = Path(__file__).with_name("templates")
STYLESHEET = Path(__file__).with_name("static") / "jisr.css"
STYLESHEET_URL = pages.STYLESHEET_URL
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
RENDERER = pages.Renderer(TEMPLATES, csp=CSP)


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass(frozen=True)
class Labels(pages.Labels):
    """Every word a template shows, in one language; dates in one time zone."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def specialty(self, code: str | None) -> str:
        term = vocab.specialties().get(code or "")
        return term.label(self.lang) if term else code or "-"

    def service(self, code: str | None) -> str:
        term = vocab.service_kinds().get(code or "")
        return term.label(self.lang) if term else code or "-"

    def urgency(self, code: str) -> str:
        return self.t(f"urgency.{code}")

    def status(self, code: str) -> str:
        return self.t(f"status.{code}")

    def outcome(self, code: str | None) -> str:
        return self.t(f"outcome.{code}") if code else "-"

    def schedule_kind(self, code: str | None) -> str:
        return self.t(f"schedule_kind.{code}") if code else "-"

    def sex(self, code: str | None) -> str:
        return self.t(f"sex.{code}") if code else "-"

    def language(self, code: str) -> str:
        return self.t(f"lang.{code}") if code in LANGUAGES else code

    def dt(self, value: datetime | None) -> str:
        if value is None:
            return "-"
        local = value.astimezone(self.tz)
        return self._isolate(f"{local:%Y-%m-%d %H:%M} {local.tzname() or ''}".strip())

    def day(self, value: date | None) -> str:
        return self._isolate(value.isoformat()) if value else "-"

    def _isolate(self, text: str) -> str:
        """Dates read left to right even inside an Arabic sentence (Unicode LRI ... PDI)."""
        return f"\u2066{text}\u2069" if self.dir == "rtl" else text

    def reasons(self, items: Iterable[Any]) -> list[str]:
        return [localize_reason(item, self.lang) for item in items]

    def number(self, value: float) -> str:
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def labels_for(caller: Caller | None, lang: str, timezone: str | None) -> Labels:
    return Labels(lang=caller.lang if caller else lang, tz=zone(timezone))


# Reasons in the reader's language ----------------------------------------------------


def localize_reason(item: Any, lang: str) -> str:
    """A stored reason ({"key", "params"}, a `Message`, or older plain text) in words."""
    if isinstance(item, messages.Message):
        item = item.as_dict()
    return messages.render([item], lang)[0]


# Errors from services, as the reader should see them ----------------------------------


def problem_message(exc: JisrError, labels: Labels) -> tuple[str, list[str]]:
    """The words for a refused action: its rule when we have words for it, else its kind."""
    rule = str(exc.extra.get("rule") or "")
    key = f"error.rule.{rule}"
    message = labels.t(key)
    if not rule or message == key:
        message = labels.t(f"problem.{exc.slug}")
    reasons: list[str] = []
    if isinstance(exc, EntitlementRefused):
        reasons = labels.reasons(exc.extra.get("reasons") or [])
    return message, reasons


# Responses ----------------------------------------------------------------------------


def page(
    request: Request,
    template: str,
    labels: Labels,
    *,
    caller: Caller | None = None,
    institution: str | None = None,
    status_code: int = 200,
    flash: list[tuple[str, str]] | None = None,
    **context: Any,
) -> Response:
    """A page in the reader's language, with the CSRF token its forms need."""
    return RENDERER.page(
        request,
        template,
        labels,
        caller=caller,
        status_code=status_code,
        L=labels,
        roles=sorted(r.value for r in caller.roles) if caller else [],
        institution=institution,
        path=request.url.path,
        flash=flash or [],
        **context,
    )
