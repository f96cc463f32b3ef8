"""Activity reports: the pure aggregation, and real referrals counted through the API."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from services.referral.referrals.models import ReferralOffer
from services.referral.reports import service as reports
from services.referral.reports.repository import Offer, ReferralFacts, Usage
from shared.audit import AuditEvent
from shared.identity.models import Role
from shared.platform import Platform
from tests.referral.conftest import World

T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)


def usage(state: str, rid: int | str, at: datetime = T0, **kw: str | None) -> Usage:
    return Usage(
        state=state,
        service=str(kw.get("service") or "second_opinion"),
        specialty=kw.get("specialty", "paediatric_surgery"),
        units=1,
        occurred_at=at,
        resource_type=str(kw.get("resource_type") or "referral"),
        resource_id=str(rid),
    )


def offer(
    oid: int, rid: int, hours: float | None, outcome: str = "accepted", paused_s: int = 0
) -> Offer:
    return Offer(
        id=oid,
        referral_id=rid,
        offered_at=T0,
        responded_at=None if hours is None else T0 + timedelta(hours=hours),
        outcome=outcome,
        paused_s=paused_s,
    )


# Pure rules ---------------------------------------------------------------------------


def test_the_median_of_response_times() -> None:
    assert reports.median([]) is None
    assert reports.median([5.0]) == 5.0
    assert reports.median([30.0, 2.0, 9.0]) == 9.0
    assert reports.median([2.0, 4.0, 9.0, 30.0]) == 6.5
    assert reports.median([1 / 3, 2 / 3]) == 0.5


def test_a_response_time_runs_from_the_offer_to_the_answer_net_of_paused_time() -> None:
    assert reports.response_hours(offer(1, 1, 10, paused_s=3600)) == 9
    assert reports.response_hours(offer(1, 1, 4, outcome="declined")) == 4
    assert reports.response_hours(offer(1, 1, None, outcome="pending")) is None
    assert reports.response_hours(offer(1, 1, 3, outcome="withdrawn")) is None
    assert reports.response_hours(offer(1, 1, 1, paused_s=7200)) == 0


def test_how_a_unit_of_work_ended() -> None:
    closed = ReferralFacts(1, "closed", "improved")
    assert reports.outcome_of("consumed", closed, offer(1, 1, 2)) == "improved"
    assert reports.outcome_of("consumed", ReferralFacts(1, "scheduled", None), None) == "scheduled"
    assert reports.outcome_of("reserved", ReferralFacts(1, "offered", None), None) == "offered"
    # Declined here, then accepted elsewhere: for this agreement it was declined.
    elsewhere = ReferralFacts(1, "accepted", None)
    assert reports.outcome_of("released", elsewhere, offer(1, 1, 4, "declined")) == "declined"
    assert reports.outcome_of("released", elsewhere, offer(1, 1, 4, "expired")) == "expired"
    cancelled = ReferralFacts(1, "cancelled", None)
    assert reports.outcome_of("released", cancelled, offer(1, 1, 1, "withdrawn")) == "cancelled"
    assert reports.outcome_of("released", elsewhere, offer(1, 1, 1, "withdrawn")) == "rerouted"
    assert reports.outcome_of("released", None, None) == "released"


def test_periods_are_checked_and_read_in_the_agreements_zone() -> None:
    assert reports.period_error(date(2026, 1, 1), date(2026, 1, 1)) is None
    assert reports.period_error(date(2026, 1, 2), date(2026, 1, 1)) == "`to` is before `from`"
    assert reports.period_error(date(2021, 1, 1), date(2025, 12, 31)) is None
    assert "5 years" in (reports.period_error(date(2021, 1, 1), date(2026, 1, 1)) or "")
    assert reports.period_error(date(2024, 2, 29), date(2029, 2, 28)) is None
    assert reports.period_error(date(2024, 2, 29), date(2029, 3, 1)) is not None
    since, until = reports.bounds(date(2026, 1, 1), date(2026, 1, 31), "Africa/Algiers")
    assert since == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    assert until == datetime(2026, 1, 31, 23, 0, tzinfo=UTC)
    assert reports.months(date(2025, 11, 15), date(2026, 2, 1)) == [
        "2025-11",
        "2025-12",
        "2026-01",
        "2026-02",
    ]
    assert reports.default_start(date(2026, 3, 17)) == date(2025, 4, 1)
    assert reports.default_start(date(2026, 12, 31)) == date(2026, 1, 1)


def test_ledger_rows_are_counted_by_state_service_specialty_outcome_and_month() -> None:
    late_january_utc = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)  # already February in Algiers
    rows = [
        usage("consumed", 1),
        usage("consumed", 2, late_january_utc, specialty="neurology"),
        usage("released", 3),
        usage("reserved", 4),
        usage("consumed", 7, service="visiting_mission", specialty=None, resource_type="mission"),
    ]
    facts = {
        1: ReferralFacts(1, "closed", "improved"),
        2: ReferralFacts(2, "accepted", None),
        3: ReferralFacts(3, "offered", None),
        4: ReferralFacts(4, "offered", None),
    }
    offers = [offer(10, 3, 4, "declined"), offer(11, 1, 2), offer(12, 2, 30)]
    answered = [*offers, offer(13, 9, 10, paused_s=3600)]
    found = reports.aggregate(
        rows,
        facts,
        offers,
        answered,
        start=date(2026, 1, 1),
        end=date(2026, 3, 31),
        timezone="Africa/Algiers",
    )
    t = found.totals
    assert (t.consumed, t.released, t.reserved, t.total) == (3, 1, 1, 5)
    second = found.by_service["second_opinion"]
    assert (second.consumed, second.released, second.reserved) == (2, 1, 1)
    assert found.by_service["visiting_mission"].consumed == 1
    assert {k: v.total for k, v in found.by_specialty.items()} == {
        "neurology": 1,
        "paediatric_surgery": 3,
        "unspecified": 1,
    }
    assert found.by_outcome == {"accepted": 1, "declined": 1, "improved": 1, "offered": 1}
    assert {k: v.consumed for k, v in found.months.items()} == {
        "2026-01": 2,
        "2026-02": 1,
        "2026-03": 0,
    }
    assert found.median_response_hours == 6.5  # 2, 4, 9 and 30 hours

    table = list(csv.reader(io.StringIO(reports.to_csv(found))))
    assert table[0] == ["dimension", "key", "state", "count"]
    assert ["total", "all", "consumed", "3"] in table
    assert ["service", "visiting_mission", "consumed", "1"] in table
    assert ["specialty", "neurology", "consumed", "1"] in table
    assert ["outcome", "declined", "", "1"] in table
    assert ["month", "2026-03", "consumed", "0"] in table
    assert table[-2:] == [["median_response_hours", "", "", "6.5"], ["responses", "", "", "4"]]


def test_an_empty_period_still_has_its_months_and_no_median() -> None:
    found = reports.aggregate(
        [], {}, [], [], start=date(2026, 1, 1), end=date(2026, 2, 10), timezone="UTC"
    )
    assert found.totals.total == 0 and found.median_response_hours is None
    assert list(found.months) == ["2026-01", "2026-02"]
    assert ["median_response_hours", "", "", ""] in list(
        csv.reader(io.StringIO(reports.to_csv(found)))
    )


# Through the API ----------------------------------------------------------------------


async def agreement_ids(w: World) -> tuple[int, int]:
    page = await w.client.get("/api/agreements", headers=w.h(w.origin_coordinator))
    codes = {a["code"]: a["id"] for a in page.json()["items"]}
    return codes["AG-TW-OUA-SET"], codes["AG-CO-OUA-APHP"]


async def submit(w: World, n: int, specialty: str = "paediatric_surgery") -> int:
    response = await w.submit(
        patient={
            "local_id": f"OUA-R-{n}",
            "name": f"Patient {n}",
            "sex": "F",
            "birth_date": "2015-03-02",
        },
        specialty=specialty,
    )
    assert response.status_code == 201, response.text
    assert response.json()["provider"]["code"] == "DZ-SETIF-CHU"
    rid: int = response.json()["id"]
    return rid


async def backdate(platform: Platform, agreement_id: int, hours: dict[int, float]) -> None:
    """Answers in a test come within milliseconds: give each answered offer a known response time."""
    async with platform.database.transaction() as session:
        rows = await session.scalars(
            select(ReferralOffer).where(
                ReferralOffer.agreement_id == agreement_id,
                ReferralOffer.referral_id.in_(list(hours)),
            )
        )
        for row in rows:
            assert row.responded_at is not None
            row.offered_at = row.responded_at - timedelta(hours=hours[row.referral_id])
            row.paused_s = 3600 if hours[row.referral_id] == 10 else 0


async def test_the_activity_report_counts_what_the_partners_did(
    world: World, platform: Platform
) -> None:
    w = world
    twinning, cooperation = await agreement_ids(w)
    neurology = await w.client.post(
        f"/api/agreements/{twinning}/coverage",
        json={"service": "second_opinion", "specialties": ["neurology"]},
        headers=w.h(w.setif_coordinator),
    )
    assert neurology.status_code == 201, neurology.text

    # 1: accepted, reported on, acknowledged with an outcome.
    r1 = await submit(w, 1)
    await w.act(w.setif_specialist, r1, "accept")
    await w.act(w.setif_specialist, r1, "complete", {"findings": "F.", "recommendations": "R."})
    await w.act(w.referrer, r1, "report/acknowledge", {"outcome": "improved"})
    # 2: declined by Sétif, and so offered to AP-HP.
    r2 = await submit(w, 2)
    declined = await w.act(w.setif_specialist, r2, "decline", {"reason": "No slot this month"})
    assert declined.json()["provider"]["code"] == "FR-PARIS-APHP"
    # 3: accepted and still open. 4: cancelled by the referrer. 6: waiting for Sétif.
    r3 = await submit(w, 3)
    await w.act(w.setif_specialist, r3, "accept")
    r4 = await submit(w, 4)
    await w.act(w.referrer, r4, "cancel", {"reason": "The family chose to travel"})
    # 5: a neurology case, accepted and reported on.
    r5 = await submit(w, 5, "neurology")
    await w.act(w.setif_specialist, r5, "accept")
    await w.act(w.setif_specialist, r5, "complete", {"findings": "F.", "recommendations": "R."})
    await submit(w, 6)
    # Answers after 2, 4, 10 (1 of them paused: 9 net) and 30 hours: the median is 6.5 h.
    await backdate(platform, twinning, {r1: 2, r2: 4, r3: 10, r5: 30})

    today = datetime.now(ZoneInfo("Africa/Algiers")).date()
    period = f"from={(today - timedelta(days=10)).isoformat()}&to={today.isoformat()}"
    response = await w.client.get(
        f"/api/reports/activity?agreement_id={twinning}&{period}",
        headers=w.h(w.setif_coordinator),
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["agreement"]["code"] == "AG-TW-OUA-SET"
    assert report["period"] == {
        "from": (today - timedelta(days=10)).isoformat(),
        "to": today.isoformat(),
        "timezone": "Africa/Algiers",
    }
    assert report["totals"] == {"consumed": 3, "released": 2, "reserved": 1, "total": 6}
    assert [
        (b["key"], b["consumed"], b["released"], b["reserved"]) for b in report["by_service"]
    ] == [("second_opinion", 3, 2, 1)]
    assert {b["key"]: b["consumed"] for b in report["by_specialty"]} == {
        "neurology": 1,
        "paediatric_surgery": 2,
    }
    assert {o["key"]: o["count"] for o in report["by_outcome"]} == {
        "improved": 1,
        "declined": 1,
        "accepted": 1,
        "cancelled": 1,
        "completed": 1,
        "offered": 1,
    }
    assert report["median_response_hours"] == 6.5 and report["responses"] == 4
    this_month = today.strftime("%Y-%m")
    assert report["months"][-1] == {
        "month": this_month,
        "consumed": 3,
        "released": 2,
        "reserved": 1,
        "total": 6,
    }
    assert sum(m["consumed"] for m in report["months"]) == 3

    # AP-HP's side of the declined case: one referral waiting for its answer.
    aphp = await w.client.get(
        f"/api/reports/activity?agreement_id={cooperation}&{period}",
        headers=w.h(w.aphp_coordinator, "fr"),
    )
    assert aphp.json()["totals"] == {"consumed": 0, "released": 0, "reserved": 1, "total": 1}
    assert aphp.json()["by_outcome"] == [
        {"key": "offered", "label": "en attente du prestataire", "count": 1}
    ]
    assert aphp.json()["median_response_hours"] is None

    as_csv = await w.client.get(
        f"/api/reports/activity?agreement_id={twinning}&{period}&format=csv",
        headers=w.h(w.origin_coordinator),
    )
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    expected_name = f"activity-AG-TW-OUA-SET-{(today - timedelta(days=10)).isoformat()}-{today}.csv"
    assert expected_name in as_csv.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == ["dimension", "key", "state", "count"]
    assert ["total", "all", "released", "2"] in rows
    assert ["specialty", "neurology", "consumed", "1"] in rows
    assert ["outcome", "cancelled", "", "1"] in rows
    assert ["median_response_hours", "", "", "6.5"] in rows


async def test_a_period_before_the_work_is_empty_and_defaults_cover_a_year(
    world: World,
) -> None:
    w = world
    twinning, _ = await agreement_ids(w)
    rid = await submit(w, 1)
    await w.act(w.setif_specialist, rid, "accept")
    old = await w.client.get(
        f"/api/reports/activity?agreement_id={twinning}&from=2020-01-01&to=2020-12-31",
        headers=w.h(w.setif_coordinator),
    )
    assert old.json()["totals"]["total"] == 0 and len(old.json()["months"]) == 12
    default = await w.client.get(
        f"/api/reports/activity?agreement_id={twinning}", headers=w.h(w.setif_coordinator)
    )
    body = default.json()
    assert body["totals"]["consumed"] == 1 and len(body["months"]) == 12
    assert body["period"]["to"] == datetime.now(ZoneInfo("Africa/Algiers")).date().isoformat()


async def test_reports_are_for_the_reporting_roles_of_the_parties(
    world: World, platform: Platform
) -> None:
    w = world
    twinning, cooperation = await agreement_ids(w)
    url = f"/api/reports/activity?agreement_id={twinning}"
    stranger = await w.client.get(url, headers=w.h(w.stranger))
    assert stranger.status_code == 404
    assert stranger.json()["type"] == "urn:jisr:problem:not-found"
    not_a_party = await w.client.get(url, headers=w.h(w.aphp_coordinator))
    assert not_a_party.status_code == 404
    specialist = await w.client.get(url, headers=w.h(w.setif_specialist))
    assert specialist.status_code == 403 and specialist.json()["rule"] == "role_required"
    physician = await w.client.get(url + "&format=csv", headers=w.h(w.referrer))
    assert physician.status_code == 403

    auditor = await w.factory.user(w.setif, Role.AUDITOR)
    assert (await w.client.get(url, headers=w.h(auditor))).status_code == 200
    operator = await w.factory.operator()
    platform_admin = await w.factory.user(operator, Role.ADMIN)
    assert (await w.client.get(url, headers=w.h(platform_admin))).status_code == 200
    operator_specialist = await w.factory.user(operator, Role.SPECIALIST, Role.COORDINATOR)
    assert (await w.client.get(url, headers=w.h(operator_specialist))).status_code == 404

    async with platform.database.transaction() as session:
        events = list(
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "report.activity")
                .order_by(AuditEvent.id)
            )
        )
    assert [(e.actor_id, e.outcome, e.rule) for e in events] == [
        (w.stranger.id, "refused", "not_visible"),
        (w.aphp_coordinator.id, "refused", "not_visible"),
        (w.setif_specialist.id, "refused", "role_required"),
        (w.referrer.id, "refused", "role_required"),
        (auditor.id, "ok", None),
        (platform_admin.id, "ok", None),
        (operator_specialist.id, "refused", "not_visible"),
    ]
    assert cooperation != twinning


@pytest.mark.parametrize(
    "query",
    [
        "from=2026-03-01&to=2026-02-01",
        "from=2020-01-01&to=2026-01-01",
        "from=2026-13-01&to=2026-12-31",
        "from=yesterday",
        "format=xml",
        "agreement_id=0",
    ],
)
async def test_bad_report_requests_are_422_problems(world: World, query: str) -> None:
    twinning, _ = await agreement_ids(world)
    url = f"/api/reports/activity?agreement_id={twinning}&{query}"
    if query.startswith("agreement_id"):
        url = f"/api/reports/activity?{query}"
    response = await world.client.get(url, headers=world.h(world.setif_coordinator))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:jisr:problem:validation"
