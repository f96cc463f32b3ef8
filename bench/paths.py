"""The in-memory routing paths the benchmark compares, and what they share.

`Indexed` is the platform's routing done from memory: agreements indexed by
institution (with their renewals, as `registry.repository.agreements_of`
returns them) and held usage indexed by coverage line, built once; per
referral it asks `decide()` for each providing party, as
`registry.service.decisions_for()` does, and ranks with `routing.rank()`.

`naive()` is the reference peer, what a straightforward implementation does
without an index: per referral it scans all agreements for the requester's
partners and the whole usage ledger for its lines, and per provider scans all
agreements again for those naming both institutions (and their renewals), as
`registry.service.decide()` loads one pair, then calls the same `decide()` and
`rank()`. Both paths must give the same ranking; the benchmark checks it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.synthetic import AT, Ask, Dataset
from services.referral import routing
from shared.entitlements.decide import Decision, decide
from shared.entitlements.model import Agreement, AgreementKind, CoverageLine, UsageEntry


@dataclass(frozen=True, slots=True)
class Context:
    """What ranking needs besides decisions: codes, countries, kinds and provider statistics.

    The database path reads these with one query each in `referrals.service.rank()`;
    the in-memory paths take them from here, so they measure `decide()` and `rank()`.
    """

    names: Mapping[int, str]
    countries: Mapping[int, str]
    kinds: Mapping[int, AgreementKind]
    queues: Mapping[int, int]
    speeds: Mapping[int, float]
    languages: Mapping[int, frozenset[str]]

    @classmethod
    def of(cls, data: Dataset) -> Context:
        return cls(
            names=data.names(),
            countries=data.countries(),
            kinds=data.kinds(),
            queues=data.open_queues(),
            speeds=data.median_response_hours(),
            languages=data.languages(),
        )

    def request(self, ask: Ask) -> routing.Request:
        return routing.Request(
            requester_id=ask.requester,
            requester_country=self.countries[ask.requester],
            urgency=ask.urgency,
            languages=ask.languages,
            exclude=ask.exclude,
        )

    def rank(self, ask: Ask, decisions: Mapping[int, Decision]) -> list[routing.Ranked]:
        """`routing.rank()` over candidates built as `referrals.service.rank()` builds them."""
        candidates = [
            routing.Candidate(
                provider_id=provider,
                provider_code=self.names[provider],
                country=self.countries[provider],
                decision=decision,
                twinning=self.kinds.get(decision.agreement_id or 0) is AgreementKind.TWINNING,
                open_queue=self.queues.get(provider, 0),
                median_response_hours=self.speeds.get(provider),
                languages=self.languages.get(provider, frozenset()),
            )
            for provider, decision in decisions.items()
        ]
        return routing.rank(self.request(ask), candidates)


class Indexed:
    """Agreements by institution and held usage by line, built once for every referral."""

    def __init__(self, agreements: Sequence[Agreement], held: Sequence[UsageEntry]) -> None:
        by_party: dict[int, list[Agreement]] = {}
        renewals: dict[int, list[Agreement]] = {}
        for agreement in sorted(agreements, key=lambda a: a.id):
            for party in agreement.parties:
                by_party.setdefault(party.institution_id, []).append(agreement)
            if agreement.renews_id is not None:
                renewals.setdefault(agreement.renews_id, []).append(agreement)
        self.agreements: dict[int, list[Agreement]] = {}
        for institution, found in by_party.items():
            known = {a.id for a in found}
            extra = {r.id: r for a in found for r in renewals.get(a.id, ()) if r.id not in known}
            self.agreements[institution] = found + sorted(extra.values(), key=lambda a: a.id)
        self.usage: dict[int, list[UsageEntry]] = {}
        for entry in held:
            self.usage.setdefault(entry.line_id, []).append(entry)

    def decisions(
        self,
        ask: Ask,
        names: Mapping[int, str],
        usage: Sequence[UsageEntry] | None = None,
    ) -> dict[int, Decision]:
        """`decide()` for every providing party, as `registry.service.decisions_for()` asks it.

        `usage` None takes the held usage from the index; the database prototypes pass
        what they counted in SQL instead.
        """
        agreements = self.agreements.get(ask.requester, [])
        if usage is None:
            usage = [
                entry
                for _, line in quota_lines(agreements, ask)
                for entry in self.usage.get(line.id, ())
            ]
        return {
            provider: decide(
                ask.requester,
                provider,
                ask.service,
                ask.specialty,
                AT,
                [a for a in agreements if a.role_of(provider) is not None],
                usage,
                names,
            )
            for provider in providers(agreements, ask.requester)
        }

    def route(self, ask: Ask, context: Context) -> list[routing.Ranked]:
        return context.rank(ask, self.decisions(ask, context.names))

    def pairs_checked(self, ask: Ask) -> int:
        """(agreement, line) pairs `decide()` weighs for this referral, over all its providers."""
        agreements = self.agreements.get(ask.requester, [])
        return sum(
            len(a.lines) or 1
            for provider in providers(agreements, ask.requester)
            for a in agreements
            if a.role_of(provider) is not None
        )


def providers(agreements: Sequence[Agreement], requester: int) -> list[int]:
    """Every providing party of the requester's agreements but itself, in id order."""
    found = {
        p.institution_id
        for a in agreements
        for p in a.parties
        if p.institution_id != requester and p.role.may_provide()
    }
    return sorted(found)


def quota_lines(agreements: Sequence[Agreement], ask: Ask) -> list[tuple[Agreement, CoverageLine]]:
    """The lines whose held units `decide()` needs: the quota lines of the asked service."""
    return [
        (a, line)
        for a in agreements
        for line in a.lines
        if line.service is ask.service and line.quota is not None
    ]


def naive(
    ask: Ask,
    context: Context,
    agreements: Sequence[Agreement],
    held: Sequence[UsageEntry],
) -> list[routing.Ranked]:
    requester = ask.requester
    mine = [a for a in agreements if a.role_of(requester) is not None]
    lines = {line.id for _, line in quota_lines(mine, ask)}
    usage = [entry for entry in held if entry.line_id in lines]
    decisions: dict[int, Decision] = {}
    for provider in providers(mine, requester):
        between = [
            a
            for a in agreements
            if a.role_of(requester) is not None and a.role_of(provider) is not None
        ]
        known = {a.id for a in between}
        between += [a for a in agreements if a.renews_id in known and a.id not in known]
        decisions[provider] = decide(
            requester, provider, ask.service, ask.specialty, AT, between, usage, context.names
        )
    return context.rank(ask, decisions)
