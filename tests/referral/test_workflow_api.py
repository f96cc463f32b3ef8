"""The triage workflow through the API: decline and re-route, information requests, races, cancellations."""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy import select

from services.referral.referrals.models import ReferralOffer
from shared.audit import AuditEvent
from shared.identity.models import Role
from shared.notifications.models import Notification
from shared.platform import Platform
from shared.registry.models import UsageEntry
from tests.referral.conftest import World


async def ledger(platform: Platform) -> list[tuple[int, str]]:
    async with platform.database.transaction() as session:
        rows = await session.scalars(select(UsageEntry).order_by(UsageEntry.id))
        return [(r.provider_id, r.state) for r in rows]


async def test_a_declined_referral_is_offered_to_the_next_provider(
    world: World, platform: Platform
) -> None:
    w = world
    rid = (await w.submit()).json()["id"]
    declined = await w.act(w.setif_specialist, rid, "decline", {"reason": "No slot before March."})
    assert declined.status_code == 200, declined.text
    body = declined.json()
    assert body["status"] == "offered" and body["provider"]["code"] == "FR-PARIS-APHP"
    assert (
        body["side"] == "observer" and body["actions"] == []
    )  # Sétif can still read it, no longer act
    assert await ledger(platform) == [(w.setif.id, "released"), (w.aphp.id, "reserved")]
    assert (await w.act(w.setif_specialist, rid, "accept")).status_code == 403
    again = await w.act(w.aphp_specialist, rid, "decline", {"reason": "Outside our scope."})
    assert again.json()["status"] == "declined" and again.json()["provider"] is None
    assert [p for p, state in await ledger(platform) if state != "released"] == []
    history = (await w.client.get(f"/api/referrals/{rid}/history", headers=w.h(w.referrer))).json()
    assert [e["kind"] for e in history].count("declined") == 2
    async with platform.database.transaction() as session:
        told = list(
            await session.scalars(
                select(Notification).where(
                    Notification.user_id == w.referrer.id, Notification.kind == "referral_declined"
                )
            )
        )
    assert told[0].lang == "fr"
    assert told[0].title == f"Demande n° {rid} refusée par DZ-SETIF-CHU"
    assert "Elle a été proposée à FR-PARIS-APHP." in told[0].body


async def test_a_foreign_provider_sees_the_patient_as_its_line_allows(world: World) -> None:
    w = world
    rid = (await w.submit()).json()["id"]
    await w.act(w.setif_specialist, rid, "decline", {"reason": "No slot."})
    seen = (await w.client.get(f"/api/referrals/{rid}", headers=w.h(w.aphp_specialist))).json()
    patient = seen["patient"]
    assert patient["identification"] == "anonymised"
    assert (
        patient["name"] is None and patient["pseudonym"] is None and patient["birth_year"] is None
    )
    assert patient["sex"] == "M" and patient["age_band"] == "0-9"
    assert "Benali" not in str(seen)


async def test_asking_for_information_stops_the_clock_until_the_referrer_answers(
    world: World,
) -> None:
    w = world
    first = (await w.submit()).json()
    rid, due = first["id"], datetime.fromisoformat(first["due_at"])
    asked = await w.act(w.setif_specialist, rid, "request-info", {"question": "Any prior surgery?"})
    assert asked.json()["status"] == "info_requested"
    assert (
        await w.act(w.setif_specialist, rid, "accept")
    ).status_code == 409  # the referrer holds it now
    answered = await w.act(w.referrer, rid, "provide-info", {"answer": "None."})
    assert answered.json()["status"] == "offered"
    assert datetime.fromisoformat(answered.json()["due_at"]) > due
    kinds = [
        e["kind"]
        for e in (
            await w.client.get(f"/api/referrals/{rid}/history", headers=w.h(w.referrer))
        ).json()
    ]
    assert kinds[-2:] == ["info_requested", "info_provided"]


async def test_two_specialists_accepting_at_once_give_one_winner_and_a_409(
    world: World, platform: Platform
) -> None:
    w = world
    rid = (await w.submit()).json()["id"]
    second = await w.factory.user(w.setif, Role.SPECIALIST)
    results = await asyncio.gather(
        w.act(w.setif_specialist, rid, "accept"), w.act(second, rid, "accept")
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    assert await ledger(platform) == [(w.setif.id, "consumed")]


async def test_cancelling_gives_the_unit_back_and_tells_the_provider(
    world: World, platform: Platform
) -> None:
    w = world
    rid = (await w.submit()).json()["id"]
    await w.act(w.setif_specialist, rid, "accept")
    refused = await w.act(w.setif_specialist, rid, "cancel", {"reason": "not mine to cancel"})
    assert refused.status_code == 403
    cancelled = await w.act(
        w.referrer, rid, "cancel", {"reason": "The family chose another hospital."}
    )
    assert cancelled.json()["status"] == "cancelled"
    assert await ledger(platform) == [(w.setif.id, "released")]
    assert (await w.act(w.referrer, rid, "cancel", {"reason": "twice"})).status_code == 409
    async with platform.database.transaction() as session:
        offer = await session.scalar(select(ReferralOffer).where(ReferralOffer.referral_id == rid))
        told = await session.scalar(
            select(Notification).where(
                Notification.user_id == w.setif_specialist.id,
                Notification.kind == "referral_cancelled",
            )
        )
    assert (
        offer is not None and offer.outcome == "accepted"
    )  # the offer was answered; the referral ended
    assert told is not None


async def test_a_coordinator_overrides_the_routing_and_it_is_audited(
    world: World, platform: Platform
) -> None:
    w = world
    rid = (await w.submit()).json()["id"]
    by_referrer = await w.act(
        w.referrer, rid, "reroute", {"provider_id": w.aphp.id, "reason": "family in Paris"}
    )
    assert by_referrer.status_code == 403
    to_stranger = await w.act(
        w.origin_coordinator, rid, "reroute", {"provider_id": w.tinghir.id, "reason": "why not"}
    )
    assert to_stranger.status_code == 403 and to_stranger.json()["rule"] == "no_agreement"
    moved = await w.act(
        w.origin_coordinator,
        rid,
        "reroute",
        {"provider_id": w.aphp.id, "reason": "family in Paris"},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["provider"]["code"] == "FR-PARIS-APHP"
    assert await ledger(platform) == [(w.setif.id, "released"), (w.aphp.id, "reserved")]
    async with platform.database.transaction() as session:
        actions = [
            e.action
            for e in await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.resource_type == "referral", AuditEvent.outcome != "allowed"
                )
            )
        ]
    assert "referral.reroute" in actions


async def test_a_draft_is_routed_only_when_submitted(world: World) -> None:
    w = world
    draft = (await w.submit(draft=True)).json()
    assert draft["status"] == "draft" and draft["provider"] is None
    submitted = await w.client.post(f"/api/referrals/{draft['id']}/submit", headers=w.h(w.referrer))
    assert submitted.json()["status"] == "offered"
    again = await w.client.post(f"/api/referrals/{draft['id']}/submit", headers=w.h(w.referrer))
    assert again.status_code == 409


async def test_a_referral_nobody_may_take_is_refused_with_reasons_and_not_kept(
    world: World,
) -> None:
    w = world
    response = await w.submit(specialty="cardiology")
    assert response.status_code == 403
    problem = response.json()
    assert problem["rule"] == "no_eligible_provider"
    assert any("mais pas la spécialité Cardiologie" in reason for reason in problem["reasons"])
    listed = await w.client.get("/api/referrals?box=outbox", headers=w.h(w.referrer))
    assert listed.json()["pagination"]["total_count"] == 0


async def test_worklists_put_the_urgent_and_the_longest_waiting_first(world: World) -> None:
    w = world
    routine = (await w.submit()).json()["id"]
    emergency = (
        await w.submit(
            urgency="emergency",
            patient={"local_id": "OUA-2", "name": "Lina K", "sex": "F", "birth_date": "2015-02-01"},
        )
    ).json()["id"]
    urgent = (
        await w.submit(
            urgency="urgent",
            patient={"local_id": "OUA-3", "name": "Sami D", "sex": "M", "birth_date": "2012-09-09"},
        )
    ).json()["id"]
    inbox = (await w.client.get("/api/referrals?box=inbox", headers=w.h(w.setif_specialist))).json()
    assert [r["id"] for r in inbox["items"]] == [emergency, urgent, routine]
    assert "Lina" not in str(inbox)  # partners never see names in the pseudonymised line
    only_urgent = (
        await w.client.get(
            "/api/referrals?box=inbox&urgency=urgent", headers=w.h(w.setif_specialist)
        )
    ).json()
    assert [r["id"] for r in only_urgent["items"]] == [urgent]
    outbox = (
        await w.client.get("/api/referrals?box=outbox&limit=2", headers=w.h(w.referrer))
    ).json()
    assert outbox["pagination"]["total_count"] == 3 and len(outbox["items"]) == 2
    assert outbox["items"][0]["patient_label"] == "Lina K (OUA-2)"
    assert (await w.client.get("/api/referrals?box=inbox", headers=w.h(w.aphp_specialist))).json()[
        "items"
    ] == []
    assert (
        await w.client.get("/api/referrals?box=sideways", headers=w.h(w.referrer))
    ).status_code == 422
    assert (
        await w.client.get("/api/referrals?status=lost", headers=w.h(w.referrer))
    ).status_code == 422
