"""Joining: invited participants inside the window while the agreement allows it; the patient's link."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import timedelta

import pytest

from services.teleconsult import tokens
from services.teleconsult.sessions import joining
from shared.db import utcnow
from shared.problems import Conflict, Forbidden
from tests.teleconsult.conftest import STUN, TURN, Clinic


async def test_the_host_joins_at_once_and_a_participant_waits(clinic: Clinic) -> None:
    created = await clinic.scheduled(low_bandwidth=True)
    sid = created["id"]
    host = await clinic.join(clinic.referrer, sid)
    assert host.status_code == 200, host.text
    ticket = host.json()
    assert ticket["ws_url"] == f"/ws/teleconsults/{sid}"
    assert (ticket["role"], ticket["waiting"], ticket["peer"]) == (
        "host",
        False,
        f"user:{clinic.referrer.id}",
    )
    assert ticket["low_bandwidth"] is True
    assert ticket["session_pass"] is None
    assert 0 < ticket["expires_in"] <= clinic.platform.settings.join_token_ttl_s
    grant = tokens.verify(
        clinic.platform.keyring, clinic.platform.settings, ticket["token"], session_id=sid
    )
    assert (grant.peer, grant.role, grant.kind) == (
        f"user:{clinic.referrer.id}",
        tokens.RoomRole.HOST,
        "referring",
    )
    assert grant.institution == clinic.ouargla.name_fr  # the referrer reads French first

    guest = await clinic.join(clinic.specialist, sid)
    assert guest.status_code == 200, guest.text
    assert (guest.json()["role"], guest.json()["waiting"]) == ("participant", True)

    read = (await clinic.get(clinic.referrer, f"/api/teleconsults/{sid}")).json()
    assert read["status"] == "in_progress"
    assert read["started_at"] is not None
    joined = {p["user_id"]: p["joins"] for p in read["participants"]}
    assert joined == {clinic.referrer.id: 1, clinic.specialist.id: 1}
    events = await clinic.audit("teleconsult.join")
    assert [(e.outcome, e.rule) for e in events] == [("allowed", "allowed")] * 2


async def test_ice_servers_carry_coturn_rest_credentials_until_the_session_ends(
    clinic: Clinic,
) -> None:
    created = await clinic.scheduled()
    ticket = (await clinic.join(clinic.referrer, created["id"])).json()
    stun, turn = ticket["ice_servers"]
    assert stun == {"urls": [STUN]}
    assert turn["urls"] == [TURN]
    expiry, _, peer = turn["username"].partition(":")
    assert peer == f"user:{clinic.referrer.id}"
    settings = clinic.platform.settings
    digest = hmac.new(settings.turn_secret.encode(), turn["username"].encode(), hashlib.sha1)
    assert turn["credential"] == base64.b64encode(digest.digest()).decode()
    ends_at = utcnow() + timedelta(minutes=35)  # starts in 5, lasts 30
    limit = ends_at.timestamp() + settings.teleconsult_overrun_s
    assert time.time() < int(expiry) <= limit + 5


async def test_refused_joins_are_audited(clinic: Clinic) -> None:
    created = await clinic.scheduled()
    sid = created["id"]
    not_invited = await clinic.join(clinic.provider_radiologist, sid)
    assert (not_invited.status_code, not_invited.json()["rule"]) == (403, "not_invited")
    stranger = await clinic.join(clinic.stranger, sid)
    assert stranger.status_code == 404
    anonymous = await clinic.post(None, f"/api/teleconsults/{sid}/join")
    assert anonymous.status_code == 401
    assert await clinic.refusals("teleconsult.join") == ["not_invited", "not_visible"]


async def test_the_window_opens_early_and_closes_after_the_overrun(clinic: Clinic) -> None:
    settings = clinic.platform.settings
    created = await clinic.scheduled(starts_in=timedelta(hours=3))
    sid = created["id"]
    early = await clinic.join(clinic.referrer, sid)
    assert (early.status_code, early.json()["rule"]) == (403, "too_early")
    opens_in = timedelta(seconds=settings.teleconsult_join_early_s - 30)
    await clinic.move_slot(sid, utcnow() + opens_in)
    assert (await clinic.join(clinic.referrer, sid)).status_code == 200
    over = timedelta(minutes=30, seconds=settings.teleconsult_overrun_s + 30)
    await clinic.move_slot(sid, utcnow() - over)
    late = await clinic.join(clinic.specialist, sid)
    assert (late.status_code, late.json()["rule"]) == (403, "too_late")
    assert await clinic.refusals("teleconsult.join") == ["too_early", "too_late"]


async def test_an_agreement_suspended_since_scheduling_refuses_the_join(clinic: Clinic) -> None:
    created = await clinic.scheduled()
    await clinic.set_agreement_status("suspended")
    refused = await clinic.join(clinic.specialist, created["id"])
    assert refused.status_code == 403
    assert refused.json()["rule"] == "agreement_suspended"
    assert refused.json()["type"] == "urn:jisr:problem:entitlement-refused"
    [event] = await clinic.audit("teleconsult.join")
    assert (event.outcome, event.rule, event.counterpart_id) == (
        "refused",
        "agreement_suspended",
        clinic.ouargla.id,
    )


async def test_ended_and_cancelled_sessions_refuse_joins(clinic: Clinic) -> None:
    first = await clinic.scheduled()
    second = await clinic.scheduled()
    assert (await clinic.join(clinic.referrer, first["id"])).status_code == 200
    ended = await clinic.post(
        clinic.referrer, f"/api/teleconsults/{first['id']}/end", {"outcome": "completed"}
    )
    assert ended.status_code == 200, ended.text
    cancelled = await clinic.post(
        clinic.referrer, f"/api/teleconsults/{second['id']}/cancel", {"reason": "moved"}
    )
    assert cancelled.status_code == 200
    for sid, rule in ((first["id"], "session_ended"), (second["id"], "session_cancelled")):
        refused = await clinic.join(clinic.specialist, sid)
        assert (refused.status_code, refused.json()["rule"]) == (409, rule)
    assert await clinic.refusals("teleconsult.join") == ["session_ended", "session_cancelled"]


async def test_the_patient_joins_once_with_the_link_then_with_its_pass(clinic: Clinic) -> None:
    created = await clinic.scheduled(patient={"display_name": "Yacine B.", "language": "ar"})
    sid, secret = created["id"], created["patient_link"]["secret"]
    path = f"/api/teleconsults/{sid}/join/guest"

    wrong = await clinic.post(None, path, {"secret": "x" * 43})
    assert (wrong.status_code, wrong.json()["rule"]) == (403, "invalid_link")
    joined = await clinic.post(None, path, {"secret": secret})
    assert joined.status_code == 200, joined.text
    ticket = joined.json()
    participant_id = created["patient_link"]["participant_id"]
    assert ticket["peer"] == f"guest:{participant_id}"
    assert (ticket["role"], ticket["waiting"]) == ("participant", True)
    assert ticket["session_pass"] and ticket["session_pass_expires_in"] > 0
    grant = tokens.verify(
        clinic.platform.keyring, clinic.platform.settings, ticket["token"], session_id=sid
    )
    assert (grant.kind, grant.lang, grant.name) == ("patient", "ar", "Yacine B.")

    reused = await clinic.post(None, path, {"secret": secret})
    assert (reused.status_code, reused.json()["rule"]) == (403, "link_used")
    assert await clinic.refusals("teleconsult.join_guest") == ["invalid_link", "link_used"]

    # After a drop, the pass opens the room again; it is not an access token elsewhere.
    auth = {"Authorization": f"Bearer {ticket['session_pass']}"}
    again = await clinic.post(None, f"/api/teleconsults/{sid}/join", headers=auth)
    assert again.status_code == 200, again.text
    assert again.json()["peer"] == f"guest:{participant_id}"
    other = await clinic.scheduled()
    elsewhere = await clinic.post(None, f"/api/teleconsults/{other['id']}/join", headers=auth)
    assert elsewhere.status_code == 401
    listing = await clinic.client.get("/api/teleconsults", headers=auth)
    assert listing.status_code == 401
    # A join token is not a pass.
    as_pass = {"Authorization": f"Bearer {ticket['token']}"}
    assert (
        await clinic.post(None, f"/api/teleconsults/{sid}/join", headers=as_pass)
    ).status_code == 401

    read = (await clinic.get(clinic.referrer, f"/api/teleconsults/{sid}")).json()
    patient = next(p for p in read["participants"] if p["kind"] == "patient")
    assert (patient["invitation_pending"], patient["joins"]) == (False, 2)


async def test_a_link_refused_for_timing_is_not_spent(clinic: Clinic) -> None:
    created = await clinic.scheduled(
        starts_in=timedelta(hours=3), patient={"display_name": "Y.", "language": "fr"}
    )
    sid, secret = created["id"], created["patient_link"]["secret"]
    path = f"/api/teleconsults/{sid}/join/guest"
    early = await clinic.post(None, path, {"secret": secret})
    assert (early.status_code, early.json()["rule"]) == (403, "too_early")
    await clinic.move_slot(sid, utcnow() + timedelta(minutes=1))
    assert (await clinic.post(None, path, {"secret": secret})).status_code == 200


async def test_the_recorder_is_granted_only_with_everyone_s_consent(clinic: Clinic) -> None:
    created = await clinic.scheduled()
    sid = created["id"]
    platform = clinic.platform

    async def grant() -> joining.JoinTicket:
        async with platform.database.transaction() as session:
            return await joining.recorder_grant(session, platform, session_id=sid)

    with pytest.raises(Conflict):
        await grant()  # nobody joined yet
    assert (await clinic.join(clinic.referrer, sid)).status_code == 200
    assert (await clinic.join(clinic.specialist, sid)).status_code == 200
    consent = f"/api/teleconsults/{sid}/consent"
    assert (await clinic.post(clinic.referrer, consent, {"recording": True})).status_code == 200
    with pytest.raises(Forbidden):
        await grant()  # the specialist has not answered
    assert (await clinic.post(clinic.specialist, consent, {"recording": True})).status_code == 200
    ticket = await grant()
    assert (ticket.peer, ticket.role, ticket.waiting) == ("recorder", "recorder", False)
    verified = tokens.verify(platform.keyring, platform.settings, ticket.token, session_id=sid)
    assert verified.role is tokens.RoomRole.RECORDER
    assert ticket.ice_servers[1]["username"].endswith(":recorder")


async def test_a_session_holding_the_last_unit_of_the_quota_still_joins(clinic: Clinic) -> None:
    sessions = [await clinic.scheduled() for _ in range(2)]  # the whole quota
    assert (await clinic.schedule()).json()["rule"] == "quota_exhausted"
    joined = await clinic.join(clinic.referrer, sessions[0]["id"])
    assert joined.status_code == 200, joined.text
    [event] = await clinic.audit("teleconsult.join")
    assert (event.outcome, event.rule) == ("allowed", "quota_held")


async def test_a_patient_refused_by_the_agreement_reads_why_in_its_language(
    clinic: Clinic,
) -> None:
    created = await clinic.scheduled(patient={"display_name": "Y.", "language": "ar"})
    await clinic.set_agreement_status("suspended")
    refused = await clinic.post(
        None,
        f"/api/teleconsults/{created['id']}/join/guest",
        {"secret": created["patient_link"]["secret"]},
    )
    assert refused.status_code == 403
    assert refused.json()["rule"] == "agreement_suspended"
    assert clinic.agreement.code in refused.json()["detail"]
    assert any("\u0600" <= ch <= "\u06ff" for ch in refused.json()["detail"])  # Arabic
    assert await clinic.refusals("teleconsult.join_guest") == ["agreement_suspended"]


async def test_refusals_speak_the_reader_s_language(clinic: Clinic) -> None:
    created = await clinic.scheduled(patient={"display_name": "Y.", "language": "ar"})
    sid = created["id"]
    in_arabic = await clinic.client.post(
        f"/api/teleconsults/{sid}/join", headers=clinic.h(clinic.provider_radiologist, "ar")
    )
    assert in_arabic.status_code == 403
    assert in_arabic.json()["detail"] == "لا يشارك في هذه الاستشارة عن بُعد إلا المدعوّون إليها"
    in_french = await clinic.client.post(
        f"/api/teleconsults/{sid}/join/guest",
        json={"secret": "y" * 43},
        headers={"Accept-Language": "fr"},
    )
    assert in_french.json()["detail"] == "ce lien n'est pas valide"
    path = f"/api/teleconsults/{sid}/join/guest"
    secret = {"secret": created["patient_link"]["secret"]}
    assert (await clinic.post(None, path, secret)).status_code == 200
    reused = await clinic.post(None, path, secret)  # the patient's own language: Arabic
    assert reused.json()["detail"] == "سبق استخدام هذا الرابط؛ اطلب رابطًا جديدًا"
