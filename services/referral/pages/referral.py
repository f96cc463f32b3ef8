"""What the referral page shows: the API's read of the referral, its ranking and its timeline, in words."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.referral.pages.render import Labels
from services.referral.referrals import repository as repo
from services.referral.referrals import service, views
from services.referral.referrals.models import ReferralEvent
from services.referral.routing import WEIGHTS
from services.referral.workflow import Status
from shared.db import utcnow
from shared.identity.deps import Caller
from shared.platform import Platform
from shared.registry import repository as registry_repo
from shared.registry.models import Institution

OFFER_CAUSES = ("routing", "declined", "expired", "coordinator")


async def context(
    platform: Platform,
    caller: Caller,
    labels: Labels,
    referral_id: int,
    *,
    open_form: str | None = None,
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The template's context; `NotFound` (the same for missing and invisible) if it is not ours."""
    now = utcnow()
    async with platform.database.transaction() as session:
        referral = await service.get(session, caller, referral_id)
        read = await views.read(session, platform, caller, referral, now=now)
        events = await repo.events(session, referral.id)
        ids = {e.institution_id for e in events if e.institution_id}
        ranking = list(referral.routing)  # as stored: reasons are messages, worded below
        ids |= {int(r["provider_id"]) for r in ranking if r.get("provider_id")}
        institutions = await registry_repo.institutions_by_id(session, ids)
    by_code = {row.code: row for row in institutions.values()}
    current = read.provider.id if read.provider else None
    pending_question = next(
        (str(e.data.get("question", "")) for e in reversed(events) if e.kind == "info_requested"),
        "",
    )
    return {
        "r": read,
        "overdue": bool(read.due_at and read.due_at < now and read.status == Status.OFFERED),
        "finished_without_answer": read.provider is None
        and read.status in (Status.DECLINED, Status.EXPIRED),
        "routing": [_ranked(i, r, institutions, current, labels) for i, r in enumerate(ranking)],
        "parts": list(WEIGHTS),
        "timeline": [_entry(e, institutions, by_code, labels) for e in events],
        "pending_question": pending_question,
        "reroute_choices": [
            (int(r["provider_id"]), _name(institutions.get(int(r["provider_id"])), r, labels))
            for r in ranking
            if r.get("eligible") and r.get("provider_id") != current
        ],
        "open_form": open_form,
        "values": dict(values or {}),
        "errors": dict(errors or {}),
        "outcomes": ["improved", "stable", "worsened", "transferred", "deceased", "unknown"],
        "schedule_kinds": ["teleconsult", "transfer"],
        "tz_name": str(labels.tz),
    }


def _name(row: Institution | None, ranked: Mapping[str, Any], labels: Labels) -> str:
    return row.name(labels.lang) if row else str(ranked.get("provider_code", "-"))


def _ranked(
    index: int,
    ranked: Mapping[str, Any],
    institutions: Mapping[int, Institution],
    current: int | None,
    labels: Labels,
) -> dict[str, Any]:
    provider_id = int(ranked.get("provider_id") or 0)
    parts = ranked.get("parts") or {}
    return {
        "rank": index + 1,
        "code": str(ranked.get("provider_code", "-")),
        "name": _name(institutions.get(provider_id), ranked, labels),
        "eligible": bool(ranked.get("eligible")),
        "score": labels.number(float(ranked.get("score") or 0)),
        "parts": {k: labels.number(float(v)) for k, v in parts.items()},
        "reasons": labels.reasons(ranked.get("reasons") or []),
        "current": provider_id == current,
    }


def _entry(
    event: ReferralEvent,
    institutions: Mapping[int, Institution],
    by_code: Mapping[str, Institution],
    labels: Labels,
) -> dict[str, Any]:
    data = event.data or {}
    where = institutions.get(event.institution_id or 0)
    if event.actor_name:
        who = labels.t(
            "event.who", actor=event.actor_name, institution=where.code if where else "-"
        )
    else:
        who = labels.t("event.by_platform")

    def provider(code: Any) -> str:
        row = by_code.get(str(code))
        return row.name(labels.lang) if row else str(code or "-")

    details: list[str] = []
    kind = event.kind
    if kind == "offered":
        text = labels.t(
            "event.offered",
            provider=provider(data.get("provider")),
            score=_score(data.get("score"), labels),
        )
        cause = str(data.get("by", ""))
        if cause in OFFER_CAUSES:
            details.append(labels.t(f"event.offered.by.{cause}"))
        details += labels.reasons(data.get("reasons") or [])
        due = _parse(data.get("due_at"))
        if due:
            details.append(labels.t("event.due", due=labels.dt(due)))
    elif kind == "scheduled":
        when = _parse(data.get("at"))
        text = labels.t(
            "event.scheduled",
            kind=labels.schedule_kind(str(data.get("kind") or "")),
            when=labels.dt(when) if when else "-",
        )
        if data.get("note"):
            details.append(str(data["note"]))
    elif kind == "closed":
        text = labels.t("event.closed", outcome=labels.outcome(str(data.get("outcome") or "")))
    elif kind in ("rerouted", "escalated"):
        text = labels.t(
            f"event.{kind}",
            provider=provider(data.get("provider")),
            reason=data.get("reason", ""),
            hours=data.get("hours", "-"),
        )
    elif kind == "teleconsult":
        minutes = round(int(data.get("duration_s") or 0) / 60)
        text = labels.t(
            "event.teleconsult",
            outcome=labels.t(f"teleconsult.outcome.{data.get('outcome', '')}"),
            duration=labels.t("teleconsult.minutes", minutes=minutes),
        )
        if data.get("note"):
            details.append(str(data["note"]))
    elif kind == "imaging_report":
        text = labels.t("event.imaging_report")
        if data.get("impression"):
            details.append(str(data["impression"]))
    elif kind in KNOWN:
        text = labels.t(f"event.{kind}", **{k: v for k, v in data.items() if isinstance(v, str)})
    else:
        text = labels.t("event.other", kind=kind)
    return {"at": labels.dt(event.at), "who": who, "text": text, "details": details, "kind": kind}


KNOWN = frozenset(
    {
        "created",
        "submitted",
        "accepted",
        "declined",
        "info_requested",
        "info_provided",
        "completed",
        "cancelled",
        "expired",
    }
)


def _score(value: Any, labels: Labels) -> str:
    return labels.number(float(value)) if isinstance(value, int | float) else "-"


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
