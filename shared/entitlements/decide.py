"""`decide()`: may this requester ask this provider for this service, now?

A pure function over loaded agreements and usage. Every (agreement, coverage
line) pair is checked in a fixed order of rules; when none allows the request,
the refusal reported is the one from the pair that got furthest, so the answer
names the rule that really stood in the way ("agreement AG-2016 expired on
2019-12-31" rather than "no agreement").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from shared.entitlements import vocab
from shared.entitlements.model import (
    Agreement,
    AgreementStatus,
    CoverageLine,
    DataTerms,
    QuotaPeriod,
    ServiceKind,
    Urgency,
    UsageEntry,
)
from shared.entitlements.periods import local_date, window
from shared.i18n import translate

# Rules in the order they are checked; a later rule means the pair got further.
RULES: tuple[str, ...] = (
    "no_agreement",
    "wrong_direction",
    "service_not_covered",
    "specialty_not_covered",
    "not_on_line",
    "agreement_draft",
    "agreement_suspended",
    "agreement_terminated",
    "agreement_not_yet_valid",
    "agreement_expired",
    "agreement_superseded",
    "quota_exhausted",
)
ALLOWED = "allowed"


@dataclass(frozen=True, slots=True)
class Reason:
    """A rule and its parameters; rendered in words by `text()` in the caller's language."""

    rule: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def text(self, lang: str = "en") -> str:
        params = {key: vocab.localize(key, value, lang) for key, value in self.params.items()}
        key = f"decision.{self.rule}"
        if self.rule == "quota_exhausted" and self.params.get("period") == QuotaPeriod.TERM.value:
            key += "_term"  # a whole-term quota does not come back
        return translate(key, lang, **params)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: str
    reasons: tuple[Reason, ...]
    agreement_id: int | None = None
    agreement_code: str | None = None
    line_id: int | None = None
    quota: int | None = None
    used: int = 0
    period: QuotaPeriod | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    data_terms: DataTerms | None = None
    response_hours: Mapping[Urgency, int] = field(default_factory=dict)

    @property
    def remaining(self) -> int | None:
        """Units left in the current period, None when the line has no quota."""
        return None if self.quota is None else max(self.quota - self.used, 0)

    def explain(self, lang: str = "en") -> list[str]:
        return [reason.text(lang) for reason in self.reasons]


@dataclass(frozen=True, slots=True)
class _Outcome:
    stage: int
    decision: Decision
    starts: date
    started: bool
    """Whether the agreement had begun at the decision's instant, in its own zone."""

    def rank(self) -> tuple[int, bool, int]:
        """Furthest rule first; then an agreement already begun (the latest), else the soonest to begin."""
        day = self.starts.toordinal()
        return self.stage, self.started, day if self.started else -day


def decide(
    requester: int,
    provider: int,
    service: ServiceKind,
    specialty: str | None,
    at: datetime,
    agreements: Iterable[Agreement],
    usage: Sequence[UsageEntry] = (),
    names: Mapping[int, str] | None = None,
) -> Decision:
    """Answer whether `requester` may ask `provider` for `service` in `specialty` at `at`.

    `usage` holds the ledger rows still held (reserved or consumed) for the
    lines concerned; `names` maps institution ids to codes for the reasons.
    """
    if at.tzinfo is None:
        raise ValueError("decisions need an aware datetime")
    names = names or {}
    agreements = list(agreements)
    outcomes: list[_Outcome] = []
    for agreement in agreements:
        # Lines of other services would each only say "service not covered": one outcome says it.
        lines = [line for line in agreement.lines if line.service is service]
        for line in lines or (None,):
            outcomes.append(
                _check(
                    requester,
                    provider,
                    service,
                    specialty,
                    at,
                    agreement,
                    line,
                    agreements,
                    usage,
                    names,
                )
            )
    if not outcomes:
        reason = Reason(
            "no_agreement",
            {"requester": _name(names, requester), "provider": _name(names, provider)},
        )
        return Decision(allowed=False, rule="no_agreement", reasons=(reason,))
    allowed = [o.decision for o in outcomes if o.decision.allowed]
    if allowed:
        return max(allowed, key=lambda d: (_room(d), d.agreement_code or ""))
    ranked = sorted(
        outcomes,
        key=_Outcome.rank,
        reverse=True,
    )
    reasons: list[Reason] = []
    for outcome in ranked:
        reasons.extend(r for r in outcome.decision.reasons if r not in reasons)
    return replace(ranked[0].decision, reasons=tuple(reasons))


def _check(
    requester: int,
    provider: int,
    service: ServiceKind,
    specialty: str | None,
    at: datetime,
    agreement: Agreement,
    line: CoverageLine | None,
    agreements: Sequence[Agreement],
    usage: Sequence[UsageEntry],
    names: Mapping[int, str],
) -> _Outcome:
    code = agreement.code
    base: dict[str, Any] = {
        "agreement_id": agreement.id,
        "agreement_code": code,
        "line_id": line.id if line else None,
    }
    if line is not None:
        base.update(
            quota=line.quota,
            period=line.period,
            data_terms=line.data_terms,
            response_hours=dict(line.response_hours),
        )

    started = agreement.valid_from <= local_date(at, agreement.timezone)

    def refuse(rule: str, **params: Any) -> _Outcome:
        reason = Reason(rule, {"agreement": code, **params})
        decision = Decision(allowed=False, rule=rule, reasons=(reason,), **base)
        return _Outcome(RULES.index(rule), decision, agreement.valid_from, started)

    req_role, prov_role = agreement.role_of(requester), agreement.role_of(provider)
    if req_role is None or prov_role is None or requester == provider:
        return refuse(
            "no_agreement", requester=_name(names, requester), provider=_name(names, provider)
        )
    if not req_role.may_request() or not prov_role.may_provide():
        return refuse("wrong_direction")
    if line is None or line.service is not service:
        return refuse("service_not_covered", service=service.value)
    if line.specialties and specialty not in line.specialties:
        return refuse("specialty_not_covered", service=service.value, specialty=specialty or "-")
    if (line.requesters and requester not in line.requesters) or (
        line.providers and provider not in line.providers
    ):
        return refuse("not_on_line", line=line.id)
    status_rule = {
        AgreementStatus.DRAFT: "agreement_draft",
        AgreementStatus.SUSPENDED: "agreement_suspended",
        AgreementStatus.TERMINATED: "agreement_terminated",
    }.get(agreement.status)
    if status_rule:
        return refuse(status_rule)
    today = local_date(at, agreement.timezone)
    if today < agreement.valid_from:
        return refuse("agreement_not_yet_valid", date=agreement.valid_from.isoformat())
    if agreement.status is AgreementStatus.EXPIRED or (
        agreement.valid_until is not None and today > agreement.valid_until
    ):
        until = agreement.valid_until.isoformat() if agreement.valid_until else "-"
        return refuse("agreement_expired", date=until)
    successor = _successor_in_force(agreement, agreements, at)
    if successor is not None:
        return refuse("agreement_superseded", successor=successor.code)
    start, end = window(agreement, line.period, at)
    used = sum(
        u.units
        for u in usage
        if u.line_id == line.id and start <= u.at and (end is None or u.at < end)
    )
    base.update(used=used, period_start=start, period_end=end)
    if line.quota is not None and used >= line.quota:
        renews = (end.date() if end else None) or "-"
        return refuse(
            "quota_exhausted", quota=line.quota, period=line.period.value, renews=str(renews)
        )
    remaining = "∞" if line.quota is None else str(line.quota - used)
    reason = Reason("allowed", {"agreement": code, "line": line.id, "remaining": remaining})
    decision = Decision(allowed=True, rule=ALLOWED, reasons=(reason,), **base)
    return _Outcome(len(RULES), decision, agreement.valid_from, started)


def _successor_in_force(
    agreement: Agreement, agreements: Sequence[Agreement], at: datetime
) -> Agreement | None:
    """A renewal of `agreement` that is active and in force at `at` supersedes it."""
    for other in agreements:
        if other.renews_id != agreement.id or other.status is not AgreementStatus.ACTIVE:
            continue
        today = local_date(at, other.timezone)
        if other.valid_from <= today and (other.valid_until is None or today <= other.valid_until):
            return other
    return None


def _room(decision: Decision) -> float:
    remaining = decision.remaining
    return float("inf") if remaining is None else float(remaining)


def _name(names: Mapping[int, str], institution: int) -> str:
    return names.get(institution, f"#{institution}")
