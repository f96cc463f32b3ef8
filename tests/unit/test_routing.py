"""The routing score, without a database."""

from __future__ import annotations

from services.referral.routing import Candidate, Ranked, Request, best, rank
from shared.entitlements.decide import Decision, Reason
from shared.entitlements.model import QuotaPeriod, Urgency

HOURS = {Urgency.ROUTINE: 72, Urgency.URGENT: 24, Urgency.EMERGENCY: 4}


def allowed(quota: int | None = 10, used: int = 0, line: int = 1) -> Decision:
    return Decision(
        allowed=True,
        rule="allowed",
        reasons=(Reason("allowed", {}),),
        agreement_id=line,
        line_id=line,
        quota=quota,
        used=used,
        period=QuotaPeriod.QUARTER,
        response_hours=HOURS,
    )


def refused(rule: str) -> Decision:
    return Decision(
        allowed=False,
        rule=rule,
        reasons=(Reason(rule, {"agreement": "AG-X", "date": "2019-12-31"}),),
    )


def candidate(pid: int, code: str, country: str = "FR", **kw: object) -> Candidate:
    return Candidate(
        provider_id=pid,
        provider_code=code,
        country=country,
        decision=kw.pop("decision", allowed()),
        **kw,
    )  # type: ignore[arg-type]


def texts(ranked: Ranked, lang: str = "en") -> list[str]:
    return [m.text(lang) for m in ranked.reasons]


REQUEST = Request(
    requester_id=1, requester_country="DZ", urgency=Urgency.ROUTINE, languages=("fr",)
)


def test_a_domestic_twinning_partner_comes_before_a_foreign_provider() -> None:
    ranking = rank(
        REQUEST, [candidate(2, "FR-APHP"), candidate(3, "DZ-SETIF", "DZ", twinning=True)]
    )
    assert [r.provider_code for r in ranking] == ["DZ-SETIF", "FR-APHP"]
    assert "domestic twinning partner" in texts(ranking[0])
    assert ranking[0].parts["domestic"] == 40


def test_a_foreign_twin_is_not_domestic() -> None:
    ranking = rank(REQUEST, [candidate(2, "FR-APHP", twinning=True)])
    assert ranking[0].parts["domestic"] == 0


def test_more_quota_left_ranks_higher() -> None:
    ranking = rank(
        REQUEST,
        [candidate(2, "A", decision=allowed(10, 9)), candidate(3, "B", decision=allowed(10, 1))],
    )
    assert ranking[0].provider_code == "B"
    assert ranking[0].parts["quota"] == 18 and ranking[1].parts["quota"] == 2


def test_a_long_queue_and_slow_answers_lower_the_score() -> None:
    fast = candidate(2, "FAST", median_response_hours=12, open_queue=1)
    slow = candidate(3, "SLOW", median_response_hours=70, open_queue=12)
    ranking = rank(REQUEST, [slow, fast])
    assert [r.provider_code for r in ranking] == ["FAST", "SLOW"]
    assert ranking[1].parts["queue"] == 0  # floored, never negative
    assert "answers in 12 h (median), target 72 h" in texts(ranking[0])


def test_a_language_match_counts() -> None:
    ranking = rank(
        REQUEST,
        [
            candidate(2, "EN", languages=frozenset({"en"})),
            candidate(3, "FR", languages=frozenset({"fr", "ar"})),
        ],
    )
    assert ranking[0].provider_code == "FR" and "speaks Français" in texts(ranking[0])


def test_refused_and_already_tried_providers_are_listed_but_never_chosen() -> None:
    request = Request(
        requester_id=1, requester_country="DZ", urgency=Urgency.ROUTINE, exclude=frozenset({4})
    )
    ranking = rank(
        request,
        [
            candidate(2, "EXPIRED", decision=refused("agreement_expired")),
            candidate(4, "TRIED"),
            candidate(5, "OK"),
        ],
    )
    assert [r.provider_code for r in ranking] == ["OK", "EXPIRED", "TRIED"]
    assert best(ranking) is not None and best(ranking).provider_code == "OK"  # type: ignore[union-attr]
    assert ranking[1].rule == "agreement_expired"
    assert "expired on 2019-12-31" in texts(ranking[1])[0]
    assert ranking[2].rule == "already_tried"
    assert best(rank(request, [candidate(4, "TRIED")])) is None


def test_ties_are_broken_by_code_so_the_order_is_stable() -> None:
    ranking = rank(REQUEST, [candidate(3, "B"), candidate(2, "A")])
    assert [r.provider_code for r in ranking] == ["A", "B"]


def test_the_requester_is_never_its_own_candidate() -> None:
    assert rank(REQUEST, [candidate(1, "SELF")]) == []


def test_the_score_is_at_most_one_hundred() -> None:
    top = candidate(
        3,
        "DZ-SETIF",
        "DZ",
        twinning=True,
        median_response_hours=0,
        open_queue=0,
        languages=frozenset({"fr"}),
        decision=allowed(None),
    )
    assert rank(REQUEST, [top])[0].score == 100


def test_the_reasons_read_in_each_language() -> None:
    ranked = rank(
        REQUEST, [candidate(3, "DZ-SETIF", "DZ", twinning=True, decision=allowed(53, 3))]
    )[0]
    assert "partenaire de jumelage national" in texts(ranked, "fr")
    assert "50 sur 53 restant(s) ce trimestre" in texts(ranked, "fr")
    assert "شريك توأمة وطني" in texts(ranked, "ar")
