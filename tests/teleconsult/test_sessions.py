"""Scheduling, listing, reading and cancelling teleconsults."""

from __future__ import annotations

from datetime import timedelta

from tests.teleconsult.conftest import TELECONSULT_QUOTA, Clinic


async def test_the_referrer_schedules_a_session_that_holds_one_unit(clinic: Clinic) -> None:
    response = await clinic.schedule(
        participants=[clinic.specialist.id, clinic.referrer.id],
        interpreter=clinic.interpreter.id,
        patient={"display_name": "Yacine B.", "language": "ar"},
        low_bandwidth=True,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "scheduled"
    assert created["host_id"] == clinic.referrer.id
    assert created["low_bandwidth"] is True
    assert created["duration_minutes"] == 30
    kinds = [(p["kind"], p["host"], p["user_id"]) for p in created["participants"]]
    assert kinds == [
        ("referring", True, clinic.referrer.id),
        ("specialist", False, clinic.specialist.id),
        ("interpreter", False, clinic.interpreter.id),
        ("patient", False, None),
    ]
    link = created["patient_link"]
    assert len(link["secret"]) >= 32
    assert link["path"] == f"/api/teleconsults/{created['id']}/join/guest"
    assert await clinic.usage(created["id"]) == ["reserved"]
    [event] = await clinic.audit("teleconsult.create")
    assert (event.outcome, event.counterpart_id) == ("allowed", clinic.aphp.id)

    # The secret is returned once: reading the session never shows it again.
    read = await clinic.get(clinic.specialist, f"/api/teleconsults/{created['id']}")
    assert read.status_code == 200
    assert "patient_link" not in read.json()
    assert link["secret"] not in read.text
    assert read.json()["participants"][3]["invitation_pending"] is True


async def test_each_participant_sees_the_slot_in_their_own_time_zone(clinic: Clinic) -> None:
    created = await clinic.scheduled(
        starts_at="2030-07-01T08:00:00+00:00", participants=[clinic.specialist.id]
    )
    read = (await clinic.get(clinic.specialist, f"/api/teleconsults/{created['id']}")).json()
    slots = {p["kind"]: p["slot"] for p in read["participants"]}
    # Algiers keeps UTC+1 all year; Paris is on summer time (UTC+2) in July.
    assert slots["referring"]["timezone"] == "Africa/Algiers"
    assert slots["referring"]["starts_at"].startswith("2030-07-01T09:00:00")
    assert slots["referring"]["utc_offset"] == "+01:00"
    assert slots["specialist"]["timezone"] == "Europe/Paris"
    assert slots["specialist"]["starts_at"].startswith("2030-07-01T10:00:00")
    assert slots["specialist"]["ends_at"].startswith("2030-07-01T10:30:00")
    assert read["your_slot"] == slots["specialist"]
    mine = (await clinic.get(clinic.referrer, f"/api/teleconsults/{created['id']}")).json()
    assert mine["your_slot"]["utc_offset"] == "+01:00"


async def test_the_provider_may_schedule_too(clinic: Clinic) -> None:
    response = await clinic.schedule(clinic.specialist, participants=[clinic.referrer.id])
    assert response.status_code == 201, response.text
    assert response.json()["host_id"] == clinic.specialist.id


async def test_refused_schedulers_and_participants(clinic: Clinic) -> None:
    # Not a clinician: 403 role_required.
    refused = await clinic.schedule(clinic.origin_coordinator)
    assert refused.status_code == 403
    assert refused.json()["rule"] == "role_required"
    # A stranger's institution has no such referral: 404.
    assert (await clinic.schedule(clinic.stranger)).status_code == 404
    # A participant of a third institution: 403, audited.
    refused = await clinic.schedule(participants=[clinic.specialist.id, clinic.stranger.id])
    assert refused.status_code == 403
    assert refused.json()["rule"] == "participant_not_a_party"
    refused = await clinic.schedule(participants=[], interpreter=clinic.stranger.id)
    assert refused.status_code == 403
    # Both sides must be there; unknown users, past slots and bad payloads are 422.
    alone = await clinic.schedule(participants=[clinic.interpreter.id])
    assert (alone.status_code, alone.json()["rule"]) == (422, "both_sides_required")
    unknown = await clinic.schedule(participants=[clinic.specialist.id, 999_999])
    assert (unknown.status_code, unknown.json()["rule"]) == (422, "unknown_participant")
    past = await clinic.schedule(starts_in=timedelta(hours=-2))
    assert (past.status_code, past.json()["rule"]) == (422, "slot_in_the_past")
    naive = await clinic.schedule(starts_at="2030-07-01T08:00:00")
    assert naive.status_code == 422
    long = await clinic.schedule(duration_minutes=600)
    assert long.status_code == 422
    assert await clinic.refusals("teleconsult.create") == [
        "role_required",
        "participant_not_a_party",
        "participant_not_a_party",
    ]


async def test_the_agreement_must_allow_teleconsultation(clinic: Clinic) -> None:
    await clinic.set_agreement_status("suspended")
    refused = await clinic.schedule()
    assert refused.status_code == 403
    body = refused.json()
    assert body["type"] == "urn:jisr:problem:entitlement-refused"
    assert body["rule"] == "agreement_suspended"
    assert clinic.agreement.code in body["detail"]
    [event] = await clinic.audit("teleconsult.create")
    assert (event.outcome, event.rule, event.counterpart_id) == (
        "refused",
        "agreement_suspended",
        clinic.aphp.id,
    )


async def test_the_quota_caps_sessions_and_a_cancel_gives_the_unit_back(clinic: Clinic) -> None:
    ids = [(await clinic.scheduled())["id"] for _ in range(TELECONSULT_QUOTA)]
    refused = await clinic.schedule()
    assert refused.status_code == 403
    assert refused.json()["rule"] == "quota_exhausted"
    cancelled = await clinic.post(
        clinic.specialist, f"/api/teleconsults/{ids[0]}/cancel", {"reason": "patient unwell"}
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert await clinic.usage(ids[0]) == ["released"]
    assert (await clinic.schedule()).status_code == 201


async def test_only_an_accepted_referral_takes_a_session(clinic: Clinic) -> None:
    cancelled = await clinic.post(
        clinic.referrer, f"/api/referrals/{clinic.referral_id}/cancel", {"reason": "recovered"}
    )
    assert cancelled.status_code == 200, cancelled.text
    refused = await clinic.schedule()
    assert refused.status_code == 409
    assert refused.json()["rule"] == "referral_not_accepted"
    assert await clinic.refusals("teleconsult.create") == ["referral_not_accepted"]


async def test_listing_shows_the_two_institutions_only(clinic: Clinic) -> None:
    first = await clinic.scheduled(starts_in=timedelta(hours=1))
    second = await clinic.scheduled(starts_in=timedelta(hours=2))
    for user in (clinic.referrer, clinic.specialist, clinic.provider_radiologist):
        page = await clinic.get(user, "/api/teleconsults?limit=1")
        assert page.status_code == 200
        assert page.json()["pagination"]["total_count"] == 2
        assert [s["id"] for s in page.json()["items"]] == [second["id"]]
    by_referral = await clinic.get(
        clinic.referrer, f"/api/teleconsults?referral_id={clinic.referral_id}"
    )
    assert {s["id"] for s in by_referral.json()["items"]} == {first["id"], second["id"]}
    other = await clinic.get(clinic.referrer, "/api/teleconsults?referral_id=999999")
    assert other.json()["items"] == []
    stranger = await clinic.get(clinic.stranger, "/api/teleconsults")
    assert stranger.json()["items"] == []
    hidden = await clinic.get(clinic.stranger, f"/api/teleconsults/{first['id']}")
    missing = await clinic.get(clinic.stranger, "/api/teleconsults/999999")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].startswith("no teleconsultation")
    assert await clinic.refusals("teleconsult.read") == ["not_visible", "not_visible"]


async def test_who_may_cancel(clinic: Clinic) -> None:
    created = await clinic.scheduled()
    path = f"/api/teleconsults/{created['id']}/cancel"
    body = {"reason": "rescheduled"}
    not_invited = await clinic.post(clinic.provider_radiologist, path, body)
    assert (not_invited.status_code, not_invited.json()["rule"]) == (403, "not_invited")
    assert (await clinic.post(clinic.stranger, path, body)).status_code == 404
    assert (await clinic.post(clinic.referrer, path, body)).status_code == 200
    again = await clinic.post(clinic.referrer, path, body)
    assert (again.status_code, again.json()["rule"]) == (409, "session_not_scheduled")
    assert await clinic.refusals("teleconsult.cancel") == [
        "not_invited",
        "not_visible",
        "session_not_scheduled",
    ]
