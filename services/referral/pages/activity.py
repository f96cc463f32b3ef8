"""What the activity page shows: the reports service's figures for one agreement, and their chart."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import Request
from markupsafe import Markup

from services.referral.pages.chart import Bar, bars_svg
from services.referral.pages.render import Labels, problem_message
from services.referral.reports import schemas as rs
from services.referral.reports import service as reports
from shared import audit
from shared.db import utcnow
from shared.identity.deps import Caller
from shared.identity.models import Role
from shared.platform import Platform
from shared.problems import JisrError
from shared.registry import repository as registry_repo

SERIES = tuple(reports.STATES)


async def context(
    platform: Platform, caller: Caller, labels: Labels, request: Request
) -> dict[str, Any]:
    """The agreements to choose from and, once one is chosen, its report; refusals as messages."""
    query = request.query_params
    agreement_id = _positive(query.get("agreement_id"))
    start, end = _day(query.get("from")), _day(query.get("to"))
    everything = caller.operator and caller.has(Role.ADMIN, Role.AUDITOR)
    async with platform.database.transaction() as session:
        rows = await session.scalars(
            registry_repo.agreements(visible_to=None if everything else caller.institution_id)
        )
        choices = [(a.id, a.code) for a in rows]
    found: rs.ActivityRead | None = None
    messages: list[tuple[str, str]] = []
    status_code = 200
    if (query.get("from") and start is None) or (query.get("to") and end is None):
        messages.append(("error", labels.t("form.error.date")))
        status_code = 422
    elif agreement_id is not None:
        try:
            async with platform.database.transaction() as session:
                agreement, result = await reports.activity(
                    session, caller, agreement_id=agreement_id, start=start, end=end, now=utcnow()
                )
                found = reports.read(result, agreement, labels.lang)
        except JisrError as exc:
            if exc.refusal is not None:
                await audit.write_refusal(platform.database, exc.refusal)
            message, reasons = problem_message(exc, labels)
            messages += [("error", message)] + [("reason", r) for r in reasons]
            status_code = exc.status
    return {
        "choices": choices,
        "agreement_id": agreement_id,
        "start": query.get("from", ""),
        "end": query.get("to", ""),
        "report": found,
        "chart": chart(found, labels) if found else None,
        "series": [(state, found.states[state]) for state in SERIES] if found else [],
        "flash": messages,
        "status_code": status_code,
    }


def chart(report: rs.ActivityRead, labels: Labels) -> Markup:
    bars = [
        Bar(
            label=labels.t(f"month.{int(m.month[5:7])}"),
            sublabel=m.month[:4],
            parts=tuple(getattr(m, state) for state in SERIES),
        )
        for m in report.months
    ]
    return bars_svg(
        bars,
        [(f"s-{state}", report.states[state]) for state in SERIES],
        title=labels.t("activity.chart", code=report.agreement.code),
        rtl=labels.dir == "rtl",
    )


def _positive(value: str | None) -> int | None:
    if not value or not value.isdigit():
        return None
    number = int(value)
    return number if 0 < number < 2**31 else None


def _day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None
