"""Visiting missions: publishing under a visiting_mission line, the patient list, capacity, cancelling."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.referral.referrals import service as referrals
from services.referral.referrals.models import Referral
from services.referral.referrals.schemas import ScheduleBody, ScheduleKind
from services.referral.workflow import Action
from shared.audit import AuditEvent
from shared.db import utcnow
from shared.identity.deps import Caller
from shared.identity.models import Role, User
from shared.platform import Platform
from shared.problems import Conflict
from shared.registry.models import Agreement
from tests.referral.conftest import World

TODAY = date.today()


@pytest.fixture
async def twinning(world: World) -> Agreement:
    """Ouargla hosts Sétif's paediatric surgery team; referrals go under the same agreement."""
    return await world.factory.agreement(
        world.ouargla,
        world.setif,
        code="AG-TW-OUA-SET-MISSIONS",
        valid_from=date(2024, 1, 1),
        lines=[
            {"service": "visiting_mission", "specialties": ["paediatric_surgery"], "quota": 4},
            {"service": "second_opinion", "specialties": ["paediatric_surgery"]},
        ],
    )


def mission_body(w: World, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider_id": w.setif.id,
        "host_id": w.ouargla.id,
        "title": "Paediatric surgery mission to Ouargla",
        "starts_on": (TODAY + timedelta(days=20)).isoformat(),
        "ends_on": (TODAY + timedelta(days=24)).isoformat(),
        "specialties": ["paediatric_surgery"],
        "capacity": 3,
        "team": "Pr. Saadi (paediatric surgeon), Dr. Amrani (anaesthetist), two nurses",
    }
    body.update(overrides)
    return body


async def publish(w: World, user: User | None = None, **overrides: Any) -> httpx.Response:
    return await w.client.post(
        "/api/missions",
        json=mission_body(w, **overrides),
        headers=w.h(user or w.setif_coordinator),
    )


async def accepted_referrals(w: World, count: int) -> list[int]:
    """Referrals from Ouargla that Sétif's specialist has accepted."""
    ids = []
    for n in range(count):
        submitted = await w.submit(
            patient={
                "local_id": f"OUA-2026-{n:04d}",
                "name": f"Patient {n}",
                "sex": "F" if n % 2 else "M",
                "birth_date": "2018-06-01",
            }
        )
        assert submitted.status_code == 201, submitted.text
        assert submitted.json()["provider"]["code"] == "DZ-SETIF-CHU"
        rid = submitted.json()["id"]
        assert (await w.act(w.setif_specialist, rid, "accept")).status_code == 200
        ids.append(rid)
    return ids


async def refusals(platform: Platform, action: str) -> list[AuditEvent]:
    async with platform.database.transaction() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.outcome == "refused")
            .order_by(AuditEvent.id)
        )
        return list(rows)


def caller_of(user: User, lang: str = "fr") -> Caller:
    return Caller(
        user_id=user.id,
        username=user.username,
        display_name=user.display_name,
        institution_id=user.institution_id,
        roles=frozenset(Role(r) for r in user.roles),
        languages=tuple(user.languages),
        specialties=tuple(user.specialties),
        lang=lang,
    )


async def test_a_coordinator_publishes_a_mission_under_the_visiting_mission_line(
    world: World, twinning: Agreement, platform: Platform
) -> None:
    w = world
    created = await publish(w)
    assert created.status_code == 201, created.text
    mission = created.json()
    assert mission["agreement_id"] == twinning.id
    assert mission["agreement_code"] == "AG-TW-OUA-SET-MISSIONS"
    assert (mission["provider"]["code"], mission["host"]["code"]) == (
        "DZ-SETIF-CHU",
        "DZ-OUARGLA-EPH",
    )
    assert mission["status"] == "planned" and mission["side"] == "provider"
    assert (mission["capacity"], mission["booked"], mission["remaining"]) == (3, 0, 3)
    assert mission["patients"] == [] and mission["outcomes"] == {}

    by_host = await publish(w, w.origin_coordinator, title="Second visit")
    assert by_host.status_code == 201, by_host.text
    assert by_host.json()["side"] == "host"

    # Each mission takes a unit of the visiting_mission line (quota 4).
    coverage = await w.client.get(
        f"/api/agreements/{twinning.id}/coverage", headers=w.h(w.setif_coordinator)
    )
    line = next(c for c in coverage.json() if c["service"] == "visiting_mission")
    assert line["used"] == 2
    async with platform.database.transaction() as session:
        actions = list(
            await session.scalars(
                select(AuditEvent.action).where(AuditEvent.resource_type == "mission")
            )
        )
    assert actions.count("mission.create") == 2 and actions.count("usage.hold") == 2


async def test_publishing_is_refused_with_the_rule_of_the_agreement(
    world: World, twinning: Agreement, platform: Platform
) -> None:
    w = world
    # AP-HP's cooperation with Ouargla has no visiting_mission line.
    no_line = await publish(w, w.aphp_coordinator, provider_id=w.aphp.id)
    assert no_line.status_code == 403
    assert no_line.json()["type"] == "urn:jisr:problem:entitlement-refused"
    assert no_line.json()["rule"] == "service_not_covered"
    assert no_line.json()["reasons"]
    backwards = await publish(w, provider_id=w.ouargla.id, host_id=w.setif.id)
    assert backwards.status_code == 403 and backwards.json()["rule"] == "wrong_direction"
    other_specialty = await publish(w, specialties=["paediatric_surgery", "neurology"])
    assert other_specialty.json()["rule"] == "specialty_not_covered"
    wrong_agreement = await publish(w, agreement_id=twinning.id + 1000)
    assert wrong_agreement.status_code == 422
    refused = await refusals(platform, "mission.create")
    assert [e.rule for e in refused] == [
        "service_not_covered",
        "wrong_direction",
        "specialty_not_covered",
    ]
    assert refused[0].counterpart_id == w.ouargla.id


async def test_only_coordinators_of_the_provider_or_the_host_publish(
    world: World, twinning: Agreement, platform: Platform
) -> None:
    w = world
    specialist = await publish(w, w.setif_specialist)
    assert specialist.status_code == 403 and specialist.json()["rule"] == "role_required"
    stranger = await publish(w, w.stranger)
    assert stranger.status_code == 403 and stranger.json()["rule"] == "mission_party_required"
    # Tinghir cannot host a mission either: it has no agreement with Sétif.
    tinghir_host = await publish(w, w.stranger, host_id=w.tinghir.id)
    assert tinghir_host.status_code == 403 and tinghir_host.json()["rule"] == "no_agreement"
    assert [e.rule for e in await refusals(platform, "mission.create")] == [
        "role_required",
        "mission_party_required",
        "no_agreement",
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {"ends_on": (TODAY - timedelta(days=1)).isoformat()},
        {"capacity": 0},
        {"capacity": 501},
        {"specialties": ["astrology"]},
        {"starts_on": "2026-02-30"},
        {"host_id": 0},
        {"title": ""},
        {"ends_on": (TODAY + timedelta(days=900)).isoformat()},
    ],
)
async def test_a_mission_that_makes_no_sense_is_422(
    world: World, twinning: Agreement, overrides: dict[str, Any]
) -> None:
    body = mission_body(world, **overrides)
    if "ends_on" in overrides and "starts_on" not in overrides:
        body["starts_on"] = TODAY.isoformat()
    response = await world.client.post(
        "/api/missions", json=body, headers=world.h(world.setif_coordinator)
    )
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "urn:jisr:problem:validation"


async def test_referrals_are_booked_until_the_mission_is_full_and_the_list_shows_them(
    world: World, twinning: Agreement, platform: Platform
) -> None:
    w = world
    mission = (await publish(w, capacity=2)).json()
    r1, r2, r3 = await accepted_referrals(w, 3)
    for rid in (r1, r2):
        booked = await w.act(
            w.setif_specialist, rid, "schedule", {"kind": "mission", "mission_id": mission["id"]}
        )
        assert booked.status_code == 200, booked.text
        assert booked.json()["status"] == "scheduled"
        assert booked.json()["schedule"]["mission_id"] == mission["id"]
    full = await w.act(
        w.setif_specialist, r3, "schedule", {"kind": "mission", "mission_id": mission["id"]}
    )
    assert full.status_code == 409 and full.json()["rule"] == "mission_full"
    assert [e.rule for e in await refusals(platform, "mission.book")] == ["mission_full"]
    third = await w.client.get(f"/api/referrals/{r3}", headers=w.h(w.setif_specialist))
    assert third.json()["status"] == "accepted"

    done = await w.act(
        w.setif_specialist,
        r1,
        "complete",
        {"findings": "Distal hypospadias.", "recommendations": "Operated during the mission."},
    )
    assert done.status_code == 200
    assert (await w.act(w.referrer, r1, "report/acknowledge", {"outcome": "improved"})).json()[
        "status"
    ] == "closed"

    host_view = (
        await w.client.get(f"/api/missions/{mission['id']}", headers=w.h(w.origin_coordinator))
    ).json()
    assert (host_view["booked"], host_view["remaining"]) == (2, 0)
    assert [p["referral_id"] for p in host_view["patients"]] == [r1, r2]
    assert [p["patient"]["name"] for p in host_view["patients"]] == ["Patient 0", "Patient 1"]
    assert host_view["outcomes"] == {"improved": 1, "scheduled": 1}
    assert host_view["patients"][0]["outcome"] == "improved"

    provider_view = (
        await w.client.get(f"/api/missions/{mission['id']}", headers=w.h(w.setif_coordinator))
    ).json()
    patients = [p["patient"] for p in provider_view["patients"]]
    assert all(p["name"] is None and p["local_id"] is None for p in patients)
    assert all(p["identification"] == "pseudonymised" for p in patients)
    assert all(p["pseudonym"].startswith("P-") for p in patients)
    async with platform.database.transaction() as session:
        read = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "mission.read", AuditEvent.outcome == "allowed"
            )
        )
    assert read is not None and read.counterpart_id == w.ouargla.id
    assert read.details["referrals"] == [r1, r2]


async def test_concurrent_bookings_fill_a_mission_exactly_to_its_capacity(
    world: World, twinning: Agreement, platform: Platform
) -> None:
    w = world
    capacity, extra = 3, 5
    mission = (await publish(w, capacity=capacity)).json()
    ids = await accepted_referrals(w, capacity + extra)
    specialist = caller_of(w.setif_specialist)

    async def book(referral_id: int) -> bool:
        try:
            async with platform.database.transaction() as session:
                await referrals.act(
                    session,
                    specialist,
                    referral_id=referral_id,
                    action=Action.SCHEDULE,
                    body=ScheduleBody(kind=ScheduleKind.MISSION, mission_id=mission["id"]),
                    now=utcnow(),
                )
        except Conflict as refused:
            assert refused.extra["rule"] == "mission_full"
            return False
        return True

    results = await asyncio.gather(*(book(rid) for rid in ids))
    assert results.count(True) == capacity
    async with platform.database.transaction() as session:
        on_list = await session.scalar(
            select(func.count())
            .select_from(Referral)
            .where(Referral.mission_id == mission["id"], Referral.status == "scheduled")
        )
    assert on_list == capacity
    listed = await w.client.get(f"/api/missions/{mission['id']}", headers=w.h(w.setif_coordinator))
    assert (listed.json()["booked"], listed.json()["remaining"]) == (capacity, 0)


async def test_missions_are_listed_to_their_provider_and_host_only(
    world: World, twinning: Agreement
) -> None:
    w = world
    await publish(w, title="Soon")
    later = (
        await publish(
            w,
            title="Later",
            starts_on=(TODAY + timedelta(days=60)).isoformat(),
            ends_on=(TODAY + timedelta(days=62)).isoformat(),
        )
    ).json()
    await publish(
        w,
        w.origin_coordinator,
        title="Last winter",
        starts_on=(TODAY - timedelta(days=90)).isoformat(),
        ends_on=(TODAY - timedelta(days=86)).isoformat(),
    )
    await w.client.post(
        f"/api/missions/{later['id']}/cancel",
        json={"reason": "Team unavailable"},
        headers=w.h(w.setif_coordinator),
    )

    async def titles(user: User, query: str = "") -> list[str]:
        page = await w.client.get(f"/api/missions{query}", headers=w.h(user))
        assert page.status_code == 200, page.text
        return [m["title"] for m in page.json()["items"]]

    assert await titles(w.setif_coordinator, "?when=upcoming") == ["Soon", "Later"]
    assert await titles(w.origin_coordinator, "?when=past") == ["Last winter"]
    assert await titles(w.referrer, "?status=cancelled") == ["Later"]
    assert await titles(w.setif_specialist, "?when=upcoming&status=planned") == ["Soon"]
    assert await titles(w.setif_coordinator) == ["Later", "Soon", "Last winter"]
    assert await titles(w.stranger) == []
    assert await titles(w.aphp_coordinator) == []
    page = (await w.client.get("/api/missions?limit=1", headers=w.h(w.referrer))).json()
    assert page["pagination"]["total_count"] == 3 and page["pagination"]["max_page"] == 3
    bad = await w.client.get("/api/missions?when=someday", headers=w.h(w.referrer))
    assert bad.status_code == 422


async def test_a_stranger_neither_sees_nor_cancels_a_mission(
    world: World, twinning: Agreement, platform: Platform
) -> None:
    w = world
    mission = (await publish(w)).json()
    seen = await w.client.get(f"/api/missions/{mission['id']}", headers=w.h(w.stranger))
    assert seen.status_code == 404
    missing = await w.client.get("/api/missions/999999", headers=w.h(w.setif_coordinator))
    assert missing.status_code == 404
    assert missing.json()["type"] == seen.json()["type"] == "urn:jisr:problem:not-found"
    cancelled = await w.client.post(
        f"/api/missions/{mission['id']}/cancel",
        json={"reason": "Not mine to cancel"},
        headers=w.h(w.stranger),
    )
    assert cancelled.status_code == 404
    assert [e.rule for e in await refusals(platform, "mission.read")] == [
        "not_visible",
        "not_visible",
    ]
    refused_cancel = await refusals(platform, "mission.cancel")
    assert [(e.rule, e.actor_id) for e in refused_cancel] == [("not_visible", w.stranger.id)]
    # The AP-HP coordinator is no party to this mission either.
    other = await w.client.get(f"/api/missions/{mission['id']}", headers=w.h(w.aphp_coordinator))
    assert other.status_code == 404


async def test_cancelling_a_mission_with_booked_patients_says_who_to_reschedule(
    world: World, twinning: Agreement, platform: Platform
) -> None:
    w = world
    mission = (await publish(w, capacity=3)).json()
    r1, r2 = await accepted_referrals(w, 2)
    for rid in (r1, r2):
        await w.act(
            w.setif_specialist, rid, "schedule", {"kind": "mission", "mission_id": mission["id"]}
        )
    not_coordinator = await w.client.post(
        f"/api/missions/{mission['id']}/cancel",
        json={"reason": "Flight cancelled"},
        headers=w.h(w.setif_specialist),
    )
    assert not_coordinator.status_code == 403
    assert not_coordinator.json()["rule"] == "role_required"
    assert [e.rule for e in await refusals(platform, "mission.cancel")] == ["role_required"]
    no_reason = await w.client.post(
        f"/api/missions/{mission['id']}/cancel", json={}, headers=w.h(w.origin_coordinator)
    )
    assert no_reason.status_code == 422

    cancelled = await w.client.post(
        f"/api/missions/{mission['id']}/cancel",
        json={"reason": "Flight cancelled"},
        headers=w.h(w.origin_coordinator),
    )
    assert cancelled.status_code == 200, cancelled.text
    answer = cancelled.json()
    assert answer["status"] == "cancelled"
    assert answer["to_reschedule"] == [r1, r2] and answer["to_reschedule_count"] == 2
    assert [p["referral_id"] for p in answer["patients"]] == [r1, r2]

    history = await w.client.get(f"/api/referrals/{r1}/history", headers=w.h(w.setif_specialist))
    assert history.json()[-1]["kind"] == "mission_cancelled"
    assert history.json()[-1]["data"]["mission_id"] == mission["id"]
    notes = await w.client.get("/api/notifications", headers=w.h(w.setif_specialist))
    assert any(n["kind"] == "mission_cancelled" for n in notes.json()["items"])

    rebook = await w.act(
        w.setif_specialist, r1, "schedule", {"kind": "mission", "mission_id": mission["id"]}
    )
    assert rebook.status_code == 409 and rebook.json()["rule"] == "mission_not_planned"
    moved = await w.act(
        w.setif_specialist, r1, "schedule", {"kind": "teleconsult", "at": "2026-12-03T09:30:00Z"}
    )
    assert moved.status_code == 200 and moved.json()["schedule"]["mission_id"] is None
    again = await w.client.post(
        f"/api/missions/{mission['id']}/cancel",
        json={"reason": "Twice"},
        headers=w.h(w.setif_coordinator),
    )
    assert again.status_code == 409 and again.json()["rule"] == "mission_not_planned"

    # The mission's unit of the visiting_mission line is given back.
    coverage = await w.client.get(
        f"/api/agreements/{twinning.id}/coverage", headers=w.h(w.setif_coordinator)
    )
    line = next(c for c in coverage.json() if c["service"] == "visiting_mission")
    assert line["used"] == 0
    async with platform.database.transaction() as session:
        event = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "mission.cancel", AuditEvent.outcome == "ok"
            )
        )
    assert event is not None and event.details["to_reschedule"] == [r1, r2]
