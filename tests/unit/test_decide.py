"""`decide()` as behaviour: who may ask whom for what, and the words it says why.

Plain data built by the small builders below; no database, no clock, no mocks.
Institution 1 (KW-MOH) asks, institution 2 (FR-IGR) provides, 3 (LB-AUB) is a
third party. Times are written in UTC unless a test is about time zones.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shared.entitlements import periods
from shared.entitlements.decide import ALLOWED, RULES, Decision, decide
from shared.entitlements.model import (
    Agreement,
    AgreementStatus,
    CoverageLine,
    DataTerms,
    Identification,
    Party,
    PartyRole,
    QuotaPeriod,
    ServiceKind,
    Urgency,
    UsageEntry,
)
from shared.i18n import LANGUAGES

KUWAIT = "Asia/Kuwait"
PARIS = "Europe/Paris"
REQUESTER, PROVIDER, THIRD = 1, 2, 3
NAMES = {REQUESTER: "KW-MOH", PROVIDER: "FR-IGR", THIRD: "LB-AUB"}
NOW = datetime(2025, 6, 15, 9, 0, tzinfo=UTC)
CATALOGUES = Path(__file__).resolve().parents[2] / "shared" / "i18n"


# Builders ---------------------------------------------------------------------------------


def line(
    id: int = 10,
    service: ServiceKind = ServiceKind.IMAGING_REVIEW,
    *,
    specialties: Iterable[str] = (),
    requesters: Iterable[int] = (),
    providers: Iterable[int] = (),
    quota: int | None = None,
    period: QuotaPeriod = QuotaPeriod.TERM,
    response_hours: dict[Urgency, int] | None = None,
    data_terms: DataTerms | None = None,
) -> CoverageLine:
    return CoverageLine(
        id=id,
        service=service,
        specialties=frozenset(specialties),
        requesters=frozenset(requesters),
        providers=frozenset(providers),
        quota=quota,
        period=period,
        response_hours=response_hours or {},
        data_terms=data_terms or DataTerms(),
    )


def parties(*pairs: tuple[int, PartyRole]) -> tuple[Party, ...]:
    return tuple(Party(institution, role) for institution, role in pairs)


ONE_WAY = parties((REQUESTER, PartyRole.REQUESTER), (PROVIDER, PartyRole.PROVIDER))


def agreement(
    id: int = 1,
    code: str = "AG-2024",
    *,
    status: AgreementStatus = AgreementStatus.ACTIVE,
    valid_from: date = date(2024, 1, 1),
    valid_until: date | None = date(2026, 12, 31),
    timezone: str = "UTC",
    members: tuple[Party, ...] = ONE_WAY,
    lines: tuple[CoverageLine, ...] | None = None,
    renews_id: int | None = None,
) -> Agreement:
    return Agreement(
        id=id,
        code=code,
        status=status,
        valid_from=valid_from,
        valid_until=valid_until,
        timezone=timezone,
        parties=members,
        lines=(line(),) if lines is None else lines,
        renews_id=renews_id,
    )


def utc(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def held(line_id: int, at: datetime, units: int = 1) -> UsageEntry:
    return UsageEntry(line_id=line_id, at=at, units=units)


def ask(
    agreements: Iterable[Agreement],
    at: datetime = NOW,
    *,
    requester: int = REQUESTER,
    provider: int = PROVIDER,
    service: ServiceKind = ServiceKind.IMAGING_REVIEW,
    specialty: str | None = "cardiology",
    usage: Iterable[UsageEntry] = (),
    names: dict[int, str] | None = None,
) -> Decision:
    return decide(requester, provider, service, specialty, at, agreements, tuple(usage), names)


def first_reason(decision: Decision, lang: str = "en") -> str:
    return decision.reasons[0].text(lang)


# Allowed ----------------------------------------------------------------------------------


def test_an_allowed_request_names_the_agreement_line_and_its_terms() -> None:
    terms = DataTerms(identification=Identification.ANONYMISED, consent_required=False)
    hours = {Urgency.ROUTINE: 72, Urgency.URGENT: 24}
    covering = line(
        11, quota=10, period=QuotaPeriod.QUARTER, response_hours=hours, data_terms=terms
    )
    usage = [held(11, utc(2025, 4, 2)), held(11, utc(2025, 5, 20), units=2)]

    decision = ask([agreement(7, "AG-KW-IGR", lines=(covering,))], usage=usage)

    assert decision.allowed
    assert decision.rule == ALLOWED
    assert decision.agreement_id == 7
    assert decision.agreement_code == "AG-KW-IGR"
    assert decision.line_id == 11
    assert decision.data_terms == terms
    assert decision.response_hours == hours
    assert (decision.quota, decision.used, decision.remaining) == (10, 3, 7)
    assert decision.period is QuotaPeriod.QUARTER
    assert decision.period_start == datetime(2025, 4, 1, tzinfo=UTC)
    assert decision.period_end == datetime(2025, 7, 1, tzinfo=UTC)


def test_an_allowed_request_says_why_in_english_french_and_arabic() -> None:
    decision = ask([agreement(code="AG-KW-IGR", lines=(line(12, quota=5),))])

    english, french, arabic = (first_reason(decision, lang) for lang in ("en", "fr", "ar"))

    assert "AG-KW-IGR" in english and "allowed" in english and "5" in english
    assert "AG-KW-IGR" in french and "convention" in french
    assert "AG-KW-IGR" in arabic and "مسموح" in arabic
    assert decision.explain("fr") == [french]


def test_an_unlimited_line_has_no_remaining_count() -> None:
    decision = ask([agreement(lines=(line(quota=None),))], usage=[held(10, NOW)])

    assert decision.allowed
    assert decision.quota is None
    assert decision.remaining is None
    assert decision.used == 1
    assert "∞" in first_reason(decision)


# Agreement status and dates ---------------------------------------------------------------


def test_an_expired_agreement_refuses_and_says_when_it_expired() -> None:
    old = agreement(
        code="AG-2016",
        status=AgreementStatus.EXPIRED,
        valid_from=date(2016, 1, 1),
        valid_until=date(2019, 12, 31),
    )

    decision = ask([old])

    assert not decision.allowed
    assert decision.rule == "agreement_expired"
    assert decision.agreement_code == "AG-2016"
    assert "AG-2016 expired on 2019-12-31" in first_reason(decision)
    assert "2019-12-31" in first_reason(decision, "fr")


def test_an_active_agreement_past_its_last_day_is_expired_too() -> None:
    lapsed = agreement(code="AG-2016", valid_from=date(2016, 1, 1), valid_until=date(2019, 12, 31))

    decision = ask([lapsed])

    assert decision.rule == "agreement_expired"
    assert "expired on 2019-12-31" in first_reason(decision)


def test_an_agreement_marked_expired_refuses_even_inside_its_dates() -> None:
    decision = ask([agreement(status=AgreementStatus.EXPIRED, valid_until=date(2026, 12, 31))])

    assert decision.rule == "agreement_expired"
    assert "expired on 2026-12-31" in first_reason(decision)


def test_the_last_day_of_an_agreement_is_still_inside_it() -> None:
    last_day = agreement(valid_until=date(2025, 6, 15))

    assert ask([last_day], utc(2025, 6, 15, 23, 59)).allowed
    assert ask([last_day], utc(2025, 6, 16, 0, 0)).rule == "agreement_expired"


def test_an_agreement_is_not_yet_valid_before_its_first_day() -> None:
    future = agreement(code="AG-2026", valid_from=date(2026, 1, 1), valid_until=None)

    decision = ask([future], utc(2025, 12, 31, 23, 59))

    assert not decision.allowed
    assert decision.rule == "agreement_not_yet_valid"
    assert "valid only from 2026-01-01" in first_reason(decision)
    assert ask([future], utc(2026, 1, 1, 0, 0)).allowed


@pytest.mark.parametrize(
    ("status", "rule", "words"),
    [
        (AgreementStatus.DRAFT, "agreement_draft", "is still a draft"),
        (AgreementStatus.SUSPENDED, "agreement_suspended", "is suspended"),
        (AgreementStatus.TERMINATED, "agreement_terminated", "was terminated"),
    ],
    ids=["draft", "suspended", "terminated"],
)
def test_an_agreement_that_is_not_active_refuses_inside_its_dates(
    status: AgreementStatus, rule: str, words: str
) -> None:
    decision = ask([agreement(code="AG-X", status=status)])

    assert not decision.allowed
    assert decision.rule == rule
    assert f"AG-X {words}" in first_reason(decision)


# Parties and direction --------------------------------------------------------------------


def test_institutions_with_no_agreement_between_them_are_refused_by_name() -> None:
    elsewhere = agreement(
        members=parties((REQUESTER, PartyRole.REQUESTER), (THIRD, PartyRole.PROVIDER))
    )

    decision = ask([elsewhere], names=NAMES)

    assert not decision.allowed
    assert decision.rule == "no_agreement"
    assert first_reason(decision) == "no agreement between KW-MOH and FR-IGR"
    assert "KW-MOH" in first_reason(decision, "ar") and "FR-IGR" in first_reason(decision, "ar")


def test_no_agreement_at_all_is_a_refusal_that_names_both_institutions() -> None:
    decision = ask([], names=NAMES)

    assert decision.rule == "no_agreement"
    assert decision.agreement_code is None
    assert first_reason(decision, "fr") == "aucune convention entre KW-MOH et FR-IGR"


def test_without_names_the_institutions_are_given_by_number() -> None:
    decision = ask([])

    assert first_reason(decision) == "no agreement between #1 and #2"


def test_an_institution_cannot_ask_itself() -> None:
    both = parties((REQUESTER, PartyRole.BOTH), (PROVIDER, PartyRole.BOTH))

    decision = ask([agreement(members=both)], provider=REQUESTER, names=NAMES)

    assert decision.rule == "no_agreement"
    assert "KW-MOH and KW-MOH" in first_reason(decision)


def test_the_provider_cannot_ask_the_requester() -> None:
    decision = ask([agreement(code="AG-KW-IGR")], requester=PROVIDER, provider=REQUESTER)

    assert not decision.allowed
    assert decision.rule == "wrong_direction"
    assert "AG-KW-IGR" in first_reason(decision)
    assert "wrong direction" in first_reason(decision)


def test_a_party_that_only_provides_cannot_ask_and_one_that_only_requests_cannot_be_asked() -> None:
    provider_only = parties((REQUESTER, PartyRole.PROVIDER), (PROVIDER, PartyRole.BOTH))
    requester_only = parties((REQUESTER, PartyRole.BOTH), (PROVIDER, PartyRole.REQUESTER))

    assert ask([agreement(members=provider_only)]).rule == "wrong_direction"
    assert ask([agreement(members=requester_only)]).rule == "wrong_direction"


def test_a_party_in_both_roles_may_ask_and_be_asked() -> None:
    twinning = agreement(members=parties((REQUESTER, PartyRole.BOTH), (PROVIDER, PartyRole.BOTH)))

    assert ask([twinning], requester=REQUESTER, provider=PROVIDER).allowed
    assert ask([twinning], requester=PROVIDER, provider=REQUESTER).allowed


# Coverage ---------------------------------------------------------------------------------


def test_a_service_the_agreement_does_not_cover_is_refused() -> None:
    decision = ask([agreement(code="AG-KW-IGR")], service=ServiceKind.PATIENT_TRANSFER)

    assert decision.rule == "service_not_covered"
    assert "AG-KW-IGR does not cover the service Patient transfer" in first_reason(decision)


def test_an_agreement_without_coverage_lines_covers_no_service() -> None:
    decision = ask([agreement(lines=())])

    assert decision.rule == "service_not_covered"
    assert decision.line_id is None


def test_a_specialty_outside_the_line_is_refused() -> None:
    oncology = line(specialties={"clinical_oncology", "radiology"})

    decision = ask([agreement(lines=(oncology,))], specialty="cardiology")

    assert decision.rule == "specialty_not_covered"
    assert "covers Imaging review but not the specialty Cardiology" in first_reason(decision)


def test_a_line_restricted_to_specialties_refuses_a_request_without_one() -> None:
    decision = ask([agreement(lines=(line(specialties={"radiology"}),))], specialty=None)

    assert decision.rule == "specialty_not_covered"
    assert "not the specialty -" in first_reason(decision)


def test_a_line_with_no_specialties_covers_any_specialty() -> None:
    open_line = agreement(lines=(line(specialties=()),))

    assert ask([open_line], specialty="cardiology").allowed
    assert ask([open_line], specialty="clinical_oncology").allowed
    assert ask([open_line], specialty=None).allowed


def test_a_line_that_names_other_requesters_is_refused() -> None:
    three = parties(
        (REQUESTER, PartyRole.REQUESTER),
        (THIRD, PartyRole.REQUESTER),
        (PROVIDER, PartyRole.PROVIDER),
    )
    only_third = line(21, requesters={THIRD})

    decision = ask([agreement(code="AG-3", members=three, lines=(only_third,))])

    assert decision.rule == "not_on_line"
    assert first_reason(decision) == (
        "coverage line 21 of agreement AG-3 does not name these institutions"
    )
    assert ask([agreement(members=three, lines=(only_third,))], requester=THIRD).allowed


def test_a_line_that_names_other_providers_is_refused() -> None:
    three = parties(
        (REQUESTER, PartyRole.REQUESTER),
        (PROVIDER, PartyRole.PROVIDER),
        (THIRD, PartyRole.PROVIDER),
    )
    only_third = line(22, providers={THIRD})

    decision = ask([agreement(members=three, lines=(only_third,))])

    assert decision.rule == "not_on_line"
    assert decision.line_id == 22
    assert ask([agreement(members=three, lines=(only_third,))], provider=THIRD).allowed


# Quotas -----------------------------------------------------------------------------------


def test_an_exhausted_quota_refuses_and_says_when_it_renews() -> None:
    quarterly = line(10, quota=2, period=QuotaPeriod.QUARTER)
    usage = [held(10, utc(2025, 4, 3)), held(10, utc(2025, 6, 1))]

    decision = ask([agreement(code="AG-KW-IGR", lines=(quarterly,))], usage=usage)

    assert not decision.allowed
    assert decision.rule == "quota_exhausted"
    assert (decision.quota, decision.used, decision.remaining) == (2, 2, 0)
    assert decision.period_end == datetime(2025, 7, 1, tzinfo=UTC)
    assert first_reason(decision) == (
        "agreement AG-KW-IGR: the quota of 2 per quarter is used up until 2025-07-01"
    )


def test_units_held_count_by_their_number() -> None:
    decision = ask(
        [agreement(lines=(line(quota=3, period=QuotaPeriod.MONTH),))],
        usage=[held(10, utc(2025, 6, 2), units=3)],
    )

    assert decision.rule == "quota_exhausted"
    assert decision.used == 3


def test_usage_in_the_previous_quarter_does_not_count() -> None:
    quarterly = line(10, quota=2, period=QuotaPeriod.QUARTER)
    last_quarter = [held(10, utc(2025, 3, 31, 23, 59)), held(10, utc(2025, 1, 5))]

    decision = ask([agreement(lines=(quarterly,))], usage=last_quarter)

    assert decision.allowed
    assert decision.used == 0
    assert decision.remaining == 2


def test_a_unit_held_at_the_first_instant_of_a_month_belongs_to_that_month() -> None:
    monthly = agreement(lines=(line(10, quota=1, period=QuotaPeriod.MONTH),))

    at_june_start = ask([monthly], utc(2025, 6, 15), usage=[held(10, utc(2025, 6, 1, 0, 0))])
    at_july_start = ask([monthly], utc(2025, 6, 30, 23), usage=[held(10, utc(2025, 7, 1, 0, 0))])

    assert at_june_start.rule == "quota_exhausted"
    assert at_july_start.allowed
    assert at_july_start.used == 0


def test_usage_of_another_line_does_not_count() -> None:
    decision = ask([agreement(lines=(line(10, quota=1),))], usage=[held(99, NOW)])

    assert decision.allowed
    assert decision.remaining == 1


def test_a_released_unit_is_simply_no_longer_held_and_the_request_is_allowed_again() -> None:
    monthly = agreement(lines=(line(10, quota=1, period=QuotaPeriod.MONTH),))
    unit = held(10, utc(2025, 6, 3))

    assert ask([monthly], usage=[unit]).rule == "quota_exhausted"
    assert ask([monthly], usage=[]).allowed


def test_when_one_line_is_exhausted_the_line_of_another_agreement_with_room_is_chosen() -> None:
    full = agreement(1, "AG-A", lines=(line(10, quota=1, period=QuotaPeriod.QUARTER),))
    roomy = agreement(2, "AG-B", lines=(line(20, quota=5, period=QuotaPeriod.QUARTER),))
    usage = [held(10, utc(2025, 5, 1))]

    for order in ([full, roomy], [roomy, full]):
        decision = ask(order, usage=usage)
        assert decision.allowed
        assert (decision.agreement_code, decision.line_id, decision.remaining) == ("AG-B", 20, 5)


def test_of_two_lines_with_room_the_one_with_more_room_is_chosen() -> None:
    tight = agreement(1, "AG-A", lines=(line(10, quota=2, period=QuotaPeriod.YEAR),))
    loose = agreement(2, "AG-B", lines=(line(20, quota=3, period=QuotaPeriod.YEAR),))
    usage = [held(20, utc(2025, 2, 1)), held(20, utc(2025, 3, 1))]

    decision = ask([loose, tight], usage=usage)

    assert (decision.agreement_code, decision.remaining) == ("AG-A", 2)


def test_a_term_quota_of_an_open_ended_agreement_never_renews() -> None:
    open_ended = agreement(
        valid_from=date(2020, 1, 1), valid_until=None, lines=(line(10, quota=2),)
    )
    usage = [held(10, utc(2019, 12, 31)), held(10, utc(2021, 3, 1)), held(10, utc(2024, 8, 9))]

    decision = ask([open_ended], usage=usage)

    assert decision.rule == "quota_exhausted"
    assert decision.used == 2, "usage before the term began is not part of it"
    assert decision.period_start == datetime(2020, 1, 1, tzinfo=UTC)
    assert decision.period_end is None
    assert first_reason(decision).endswith("the quota of 2 for its whole term is used up")


def test_a_term_quota_of_a_dated_agreement_spans_the_whole_term() -> None:
    dated = agreement(
        valid_from=date(2024, 1, 1),
        valid_until=date(2026, 12, 31),
        timezone=KUWAIT,
        lines=(line(10, quota=5),),
    )

    decision = ask([dated], usage=[held(10, utc(2024, 2, 1)), held(10, utc(2025, 6, 1))])

    assert decision.used == 2
    assert decision.period_start == datetime(2024, 1, 1, tzinfo=ZoneInfo(KUWAIT))
    assert decision.period_end == datetime(2027, 1, 1, tzinfo=ZoneInfo(KUWAIT))


# Renewals ---------------------------------------------------------------------------------


def predecessor(
    *, valid_until: date | None = None, lines: tuple[CoverageLine, ...] | None = None
) -> Agreement:
    """AG-2016, open-ended unless told otherwise."""
    return agreement(
        1, "AG-2016", valid_from=date(2016, 1, 1), valid_until=valid_until, lines=lines
    )


def successor(
    *,
    status: AgreementStatus = AgreementStatus.ACTIVE,
    valid_from: date = date(2025, 1, 1),
    valid_until: date | None = None,
    lines: tuple[CoverageLine, ...] | None = None,
) -> Agreement:
    """AG-2025, the renewal of AG-2016."""
    return agreement(
        2,
        "AG-2025",
        status=status,
        valid_from=valid_from,
        valid_until=valid_until,
        lines=lines,
        renews_id=1,
    )


def test_a_renewed_agreement_is_superseded_by_its_successor_in_force() -> None:
    # The successor no longer covers imaging review, so only the predecessor's pair gets
    # as far as the renewal check, and its refusal names the successor.
    renewal = successor(lines=(line(30, ServiceKind.TELECONSULTATION),))

    decision = ask([predecessor(), renewal], utc(2025, 6, 1))

    assert not decision.allowed
    assert decision.rule == "agreement_superseded"
    assert decision.agreement_code == "AG-2016"
    assert first_reason(decision) == (
        "agreement AG-2016 was renewed by AG-2025, which applies instead"
    )


def test_the_successor_in_force_allows_in_place_of_its_predecessor() -> None:
    decision = ask([predecessor(lines=(line(10),)), successor(lines=(line(20),))], utc(2025, 6, 1))

    assert decision.allowed
    assert (decision.agreement_code, decision.line_id) == ("AG-2025", 20)


def test_before_the_successor_starts_the_predecessor_still_applies() -> None:
    renewal = successor(lines=(line(20),))

    decision = ask([predecessor(lines=(line(10),)), renewal], utc(2024, 12, 31, 23, 59))

    assert decision.allowed
    assert (decision.agreement_code, decision.line_id) == ("AG-2016", 10)


def test_a_draft_renewal_does_not_supersede_its_predecessor() -> None:
    draft = successor(status=AgreementStatus.DRAFT, lines=(line(20),))

    decision = ask([predecessor(lines=(line(10),)), draft], utc(2025, 6, 1))

    assert decision.allowed
    assert decision.agreement_code == "AG-2016"
    assert "agreement_superseded" not in {reason.rule for reason in decision.reasons}


def test_when_both_agreements_have_expired_the_latest_is_named_first_and_all_are_given() -> None:
    old = predecessor(valid_until=date(2019, 12, 31))
    renewal = successor(valid_from=date(2020, 1, 1), valid_until=date(2024, 12, 31))

    decision = ask([old, renewal], utc(2025, 6, 1))

    assert decision.rule == "agreement_expired"
    assert decision.agreement_code == "AG-2025"
    assert decision.explain() == [
        "agreement AG-2025 expired on 2024-12-31",
        "agreement AG-2016 expired on 2019-12-31",
    ]


def test_in_the_gap_between_an_agreement_and_its_renewal_both_reasons_are_given() -> None:
    old = predecessor(valid_until=date(2024, 12, 31))
    renewal = successor(valid_from=date(2025, 3, 1))

    decision = ask([renewal, old], utc(2025, 2, 1))

    assert decision.rule == "agreement_expired"
    assert decision.agreement_code == "AG-2016"
    assert decision.explain() == [
        "agreement AG-2016 expired on 2024-12-31",
        "agreement AG-2025 is valid only from 2025-03-01",
    ]


def test_among_refusals_at_the_same_rule_an_agreement_already_begun_comes_first() -> None:
    current = agreement(1, "AG-NOW", status=AgreementStatus.SUSPENDED, valid_from=date(2024, 1, 1))
    future = agreement(2, "AG-LATER", status=AgreementStatus.SUSPENDED, valid_from=date(2026, 1, 1))

    decision = ask([future, current])

    assert decision.rule == "agreement_suspended"
    assert decision.agreement_code == "AG-NOW"
    assert [reason.params["agreement"] for reason in decision.reasons] == ["AG-NOW", "AG-LATER"]


def test_before_any_agreement_begins_the_first_to_begin_is_named_first() -> None:
    # Neither has begun: what stands in the way is the wait until AG-2016's first day,
    # not the wait until its renewal's.
    old = predecessor(valid_until=date(2019, 12, 31))
    renewal = successor(valid_from=date(2020, 1, 1), valid_until=date(2024, 12, 31))

    decision = ask([old, renewal], utc(2015, 6, 1))

    assert decision.rule == "agreement_not_yet_valid"
    assert {r.params["agreement"] for r in decision.reasons} == {"AG-2016", "AG-2025"}
    assert first_reason(decision) == "agreement AG-2016 is valid only from 2016-01-01"


# Time zones and periods -------------------------------------------------------------------


def test_a_quarter_begins_at_local_midnight_in_the_agreement_zone() -> None:
    # 2025-03-31T22:30Z is already 1 April, 01:30, in Kuwait: the second quarter there.
    late_march = held(10, datetime(2025, 3, 31, 22, 30, tzinfo=UTC))
    quarterly = (line(10, quota=1, period=QuotaPeriod.QUARTER),)
    in_kuwait = agreement(timezone=KUWAIT, lines=quarterly)
    in_utc = agreement(timezone="UTC", lines=quarterly)

    april = utc(2025, 4, 15)
    assert ask([in_kuwait], april, usage=[late_march]).rule == "quota_exhausted"
    assert ask([in_utc], april, usage=[late_march]).allowed

    march = utc(2025, 3, 31, 12)
    assert ask([in_kuwait], march, usage=[late_march]).allowed
    assert ask([in_utc], march, usage=[late_march]).rule == "quota_exhausted"


def test_a_kuwaiti_quarter_window_is_given_in_local_time() -> None:
    decision = ask(
        [agreement(timezone=KUWAIT, lines=(line(quota=4, period=QuotaPeriod.QUARTER),))],
        utc(2025, 4, 15),
    )

    assert decision.period_start == datetime(2025, 3, 31, 21, 0, tzinfo=UTC)
    assert decision.period_end == datetime(2025, 6, 30, 21, 0, tzinfo=UTC)


def test_a_month_in_paris_follows_summer_and_winter_time() -> None:
    monthly = agreement(timezone=PARIS, lines=(line(10, quota=1, period=QuotaPeriod.MONTH),))
    # 2025-01-31T23:30Z is 1 February, 00:30, in Paris (UTC+1 in winter).
    first_of_february = held(10, datetime(2025, 1, 31, 23, 30, tzinfo=UTC))

    february = ask([monthly], utc(2025, 2, 10), usage=[first_of_february])
    assert february.rule == "quota_exhausted"
    assert february.period_start == datetime(2025, 1, 31, 23, 0, tzinfo=UTC)
    assert "used up until 2025-03-01" in first_reason(february)
    assert ask([monthly], utc(2025, 1, 31, 22, 59), usage=[first_of_february]).allowed

    july = ask([monthly], utc(2025, 7, 10))
    assert july.period_start == datetime(2025, 6, 30, 22, 0, tzinfo=UTC)  # UTC+2 in summer
    assert july.period_end == datetime(2025, 7, 31, 22, 0, tzinfo=UTC)


def test_a_year_in_kuwait_begins_three_hours_before_the_utc_new_year() -> None:
    yearly = agreement(timezone=KUWAIT, lines=(line(10, quota=1, period=QuotaPeriod.YEAR),))
    new_year_in_kuwait = held(10, datetime(2024, 12, 31, 21, 30, tzinfo=UTC))

    assert ask([yearly], utc(2025, 6, 1), usage=[new_year_in_kuwait]).rule == "quota_exhausted"
    assert ask([yearly], utc(2024, 12, 31, 20), usage=[new_year_in_kuwait]).allowed


def test_the_last_day_of_an_agreement_is_read_in_its_own_zone() -> None:
    kuwaiti = agreement(code="AG-KW", timezone=KUWAIT, valid_until=date(2025, 12, 31))

    # 23:00 on 31 December in Kuwait: still the last day.
    assert ask([kuwaiti], datetime(2025, 12, 31, 20, 0, tzinfo=UTC)).allowed
    # 00:30 on 1 January in Kuwait: over, though still 31 December in UTC.
    after = ask([kuwaiti], datetime(2025, 12, 31, 21, 30, tzinfo=UTC))
    assert after.rule == "agreement_expired"
    assert "AG-KW expired on 2025-12-31" in first_reason(after)
    assert ask([agreement(valid_until=date(2025, 12, 31))], utc(2025, 12, 31, 21, 30)).allowed


def test_the_first_day_of_an_agreement_is_read_in_its_own_zone() -> None:
    kuwaiti = agreement(timezone=KUWAIT, valid_from=date(2025, 1, 1), valid_until=None)

    assert ask([kuwaiti], utc(2024, 12, 31, 20, 59)).rule == "agreement_not_yet_valid"
    assert ask([kuwaiti], utc(2024, 12, 31, 21, 0)).allowed


def test_the_same_instant_gets_the_same_answer_whatever_zone_it_is_written_in() -> None:
    # 2024-12-31T22:00Z is 1 January, 01:00, in Kuwait: AG-JAN has begun there, AG-FEB has not.
    january = agreement(
        1, "AG-JAN", status=AgreementStatus.DRAFT, timezone=KUWAIT, valid_from=date(2025, 1, 1)
    )
    february = agreement(
        2, "AG-FEB", status=AgreementStatus.DRAFT, timezone=KUWAIT, valid_from=date(2025, 2, 1)
    )
    instant = datetime(2024, 12, 31, 22, 0, tzinfo=UTC)

    written_in_utc = ask([january, february], instant)
    written_in_kuwait = ask([january, february], instant.astimezone(ZoneInfo(KUWAIT)))

    assert written_in_kuwait.agreement_code == "AG-JAN"
    assert written_in_utc.agreement_code == written_in_kuwait.agreement_code
    assert written_in_utc.explain() == written_in_kuwait.explain()


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        ask([agreement()], datetime(2025, 6, 15, 9, 0))
    with pytest.raises(ValueError, match="aware datetime"):
        ask([], datetime(2025, 6, 15, 9, 0))


@pytest.mark.parametrize(
    ("period", "at", "start", "end"),
    [
        (QuotaPeriod.MONTH, utc(2025, 12, 31, 23, 59), date(2025, 12, 1), date(2026, 1, 1)),
        (QuotaPeriod.MONTH, utc(2025, 11, 1, 0, 0), date(2025, 11, 1), date(2025, 12, 1)),
        (QuotaPeriod.MONTH, utc(2024, 2, 29), date(2024, 2, 1), date(2024, 3, 1)),
        (QuotaPeriod.QUARTER, utc(2025, 1, 1, 0, 0), date(2025, 1, 1), date(2025, 4, 1)),
        (QuotaPeriod.QUARTER, utc(2025, 9, 30, 23, 59), date(2025, 7, 1), date(2025, 10, 1)),
        (QuotaPeriod.QUARTER, utc(2025, 11, 15), date(2025, 10, 1), date(2026, 1, 1)),
        (QuotaPeriod.YEAR, utc(2025, 12, 31, 23, 59), date(2025, 1, 1), date(2026, 1, 1)),
    ],
    ids=[
        "december-to-january",
        "november-to-december",
        "leap-february",
        "first-quarter",
        "third-quarter",
        "fourth-quarter-to-next-year",
        "year",
    ],
)
def test_a_period_window_is_half_open_and_rolls_over_the_year(
    period: QuotaPeriod, at: datetime, start: date, end: date
) -> None:
    window = periods.window(agreement(), period, at)

    assert window == (
        datetime.combine(start, datetime.min.time(), tzinfo=ZoneInfo("UTC")),
        datetime.combine(end, datetime.min.time(), tzinfo=ZoneInfo("UTC")),
    )
    assert window[1] is not None
    assert window[0] <= at < window[1]


def test_a_period_window_is_read_in_the_agreement_zone() -> None:
    kuwaiti = agreement(timezone=KUWAIT)
    kw = ZoneInfo(KUWAIT)
    # 2025-12-31T21:30Z is 1 January 2026 in Kuwait.
    at = datetime(2025, 12, 31, 21, 30, tzinfo=UTC)

    assert periods.window(kuwaiti, QuotaPeriod.MONTH, at) == (
        datetime(2026, 1, 1, tzinfo=kw),
        datetime(2026, 2, 1, tzinfo=kw),
    )
    assert periods.window(kuwaiti, QuotaPeriod.QUARTER, at) == (
        datetime(2026, 1, 1, tzinfo=kw),
        datetime(2026, 4, 1, tzinfo=kw),
    )
    assert periods.window(kuwaiti, QuotaPeriod.YEAR, at) == (
        datetime(2026, 1, 1, tzinfo=kw),
        datetime(2027, 1, 1, tzinfo=kw),
    )


def test_a_term_window_runs_from_the_first_day_to_the_day_after_the_last() -> None:
    dated = agreement(valid_from=date(2024, 3, 1), valid_until=date(2025, 2, 28), timezone=PARIS)
    open_ended = agreement(valid_from=date(2024, 3, 1), valid_until=None, timezone=PARIS)
    paris = ZoneInfo(PARIS)

    assert periods.window(dated, QuotaPeriod.TERM, NOW) == (
        datetime(2024, 3, 1, tzinfo=paris),
        datetime(2025, 3, 1, tzinfo=paris),
    )
    assert periods.window(open_ended, QuotaPeriod.TERM, NOW) == (
        datetime(2024, 3, 1, tzinfo=paris),
        None,
    )


def test_a_period_window_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        periods.window(agreement(), QuotaPeriod.MONTH, datetime(2025, 6, 15))


# Every rule in words ----------------------------------------------------------------------


def _covered_by_another_party() -> Decision:
    return ask(
        [agreement(members=parties((REQUESTER, PartyRole.REQUESTER), (THIRD, PartyRole.PROVIDER)))],
        names=NAMES,
    )


SCENARIOS: dict[str, Callable[[], Decision]] = {
    "no_agreement": _covered_by_another_party,
    "wrong_direction": lambda: ask([agreement()], requester=PROVIDER, provider=REQUESTER),
    "service_not_covered": lambda: ask([agreement()], service=ServiceKind.TRAINING),
    "specialty_not_covered": lambda: ask([agreement(lines=(line(specialties={"radiology"}),))]),
    "not_on_line": lambda: ask([agreement(lines=(line(requesters={THIRD}),))]),
    "agreement_draft": lambda: ask([agreement(status=AgreementStatus.DRAFT)]),
    "agreement_suspended": lambda: ask([agreement(status=AgreementStatus.SUSPENDED)]),
    "agreement_terminated": lambda: ask([agreement(status=AgreementStatus.TERMINATED)]),
    "agreement_not_yet_valid": lambda: ask([agreement(valid_from=date(2030, 1, 1))]),
    "agreement_expired": lambda: ask([agreement(valid_until=date(2020, 1, 1))]),
    "agreement_superseded": lambda: ask(
        [predecessor(), successor(lines=(line(30, ServiceKind.TRAINING),))]
    ),
    "quota_exhausted": lambda: ask(
        [agreement(lines=(line(quota=1, period=QuotaPeriod.MONTH),))], usage=[held(10, NOW)]
    ),
    ALLOWED: lambda: ask([agreement()]),
}


def _catalogue(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((CATALOGUES / f"{lang}.json").read_text(encoding="utf-8"))
    return data


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_rule_has_a_scenario_here() -> None:
    assert set(SCENARIOS) == {*RULES, ALLOWED}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("rule", [*RULES, ALLOWED])
def test_every_rule_is_worded_in_every_catalogue(rule: str, lang: str) -> None:
    key = f"decision.{rule}"
    template = _catalogue(lang).get(key)
    assert template, f"{key} is missing from {lang}.json"
    assert _placeholders(template) == _placeholders(_catalogue("en")[key])

    decision = SCENARIOS[rule]()
    assert decision.rule == rule
    text = decision.reasons[0].text(lang)
    assert text != key
    assert "{" not in text and "}" not in text, f"{lang} {rule}: unfilled placeholder in {text!r}"
