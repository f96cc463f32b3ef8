"""Ranking the providers a referral may go to, with the reasons for each score.

A pure function: the referral service gathers candidates (every provider an
active coverage line lets the requester ask for this service and specialty,
with `decide()`'s answer) and their statistics; `rank()` orders them.

The score, out of 100 (documented in the API and shown to users):

    + 40  domestic twinning partner, for what its coverage line covers
          (twinning keeps patients in the country and uses the partner's quota
          before a foreign provider's)
    + 20  quota left: 20 × the fraction of the period's quota still free
          (an unlimited line counts as fully free)
    + 15  response speed: 15 × (1 − median past response / the line's
          response time for this urgency), 7.5 when there is no history
    + 15  open queue: 15 − 1.5 per referral the provider holds open, at least 0
    + 10  language match: a specialist of the provider speaks one of the
          referral's preferred languages

Ties go to the provider with the lower institution code, so the order is stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shared.entitlements.decide import Decision
from shared.entitlements.model import Urgency
from shared.messages import Message

WEIGHTS = {"domestic": 40.0, "quota": 20.0, "speed": 15.0, "queue": 15.0, "language": 10.0}
QUEUE_STEP = 1.5


@dataclass(frozen=True, slots=True)
class Candidate:
    provider_id: int
    provider_code: str
    country: str
    decision: Decision
    twinning: bool = False
    open_queue: int = 0
    median_response_hours: float | None = None
    languages: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Request:
    requester_id: int
    requester_country: str
    urgency: Urgency
    languages: tuple[str, ...] = ()
    exclude: frozenset[int] = frozenset()
    """Providers already tried (declined or timed out) are not offered again."""


@dataclass(frozen=True, slots=True)
class Ranked:
    provider_id: int
    provider_code: str
    eligible: bool
    score: float
    parts: dict[str, float] = field(default_factory=dict)
    reasons: tuple[Message, ...] = ()
    rule: str = "allowed"
    agreement_id: int | None = None
    line_id: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "provider_id": self.provider_id,
            "provider_code": self.provider_code,
            "eligible": self.eligible,
            "score": round(self.score, 2),
            "parts": {k: round(v, 2) for k, v in self.parts.items()},
            "reasons": [m.as_dict() for m in self.reasons],
            "rule": self.rule,
            "agreement_id": self.agreement_id,
            "line_id": self.line_id,
        }


def rank(request: Request, candidates: Iterable[Candidate]) -> list[Ranked]:
    """Eligible providers best first, then the refused ones with the rule that refused them."""
    ranked = [_score(request, c) for c in candidates if c.provider_id != request.requester_id]
    return sorted(ranked, key=lambda r: (not r.eligible, -r.score, r.provider_code))


def best(ranking: Sequence[Ranked]) -> Ranked | None:
    return next((r for r in ranking if r.eligible), None)


def _score(request: Request, c: Candidate) -> Ranked:
    d = c.decision
    if c.provider_id in request.exclude:
        return Ranked(
            c.provider_id,
            c.provider_code,
            False,
            0.0,
            rule="already_tried",
            reasons=(Message("routing.already_tried"),),
        )
    if not d.allowed:
        return Ranked(
            c.provider_id,
            c.provider_code,
            False,
            0.0,
            rule=d.rule,
            reasons=tuple(Message.from_reason(r) for r in d.reasons),
            agreement_id=d.agreement_id,
            line_id=d.line_id,
        )
    parts: dict[str, float] = {}
    reasons: list[Message] = []
    domestic = c.twinning and c.country == request.requester_country
    parts["domestic"] = WEIGHTS["domestic"] if domestic else 0.0
    if domestic:
        reasons.append(Message("routing.domestic"))
    remaining, quota = d.remaining, d.quota
    free = 1.0 if quota is None or remaining is None else remaining / quota if quota else 0.0
    parts["quota"] = WEIGHTS["quota"] * free
    reasons.append(
        Message("routing.quota_unlimited")
        if quota is None
        else Message(
            "routing.quota_left", {"remaining": remaining, "quota": quota, "period": d.period}
        )
    )
    target = d.response_hours.get(request.urgency)
    if c.median_response_hours is None or not target:
        parts["speed"] = WEIGHTS["speed"] / 2
        reasons.append(Message("routing.no_history"))
    else:
        parts["speed"] = WEIGHTS["speed"] * max(0.0, 1 - c.median_response_hours / target)
        reasons.append(
            Message("routing.speed", {"median": round(c.median_response_hours), "target": target})
        )
    parts["queue"] = max(0.0, WEIGHTS["queue"] - QUEUE_STEP * c.open_queue)
    reasons.append(Message("routing.queue", {"open": c.open_queue}))
    spoken = set(request.languages) & c.languages
    parts["language"] = WEIGHTS["language"] if spoken else 0.0
    if spoken:
        reasons.append(Message("routing.languages", {"languages": ", ".join(sorted(spoken))}))
    return Ranked(
        c.provider_id,
        c.provider_code,
        True,
        sum(parts.values()),
        parts,
        tuple(reasons),
        agreement_id=d.agreement_id,
        line_id=d.line_id,
    )
