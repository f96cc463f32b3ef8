"""The whole path: submit, routed with reasons, accept, schedule, report back, acknowledge."""

from __future__ import annotations

from tests.referral.conftest import World


async def test_a_referral_goes_the_whole_way_and_closes_the_loop(world: World) -> None:
    w = world
    submitted = await w.submit()
    assert submitted.status_code == 201, submitted.text
    ref = submitted.json()
    assert ref["status"] == "offered" and ref["provider"]["code"] == "DZ-SETIF-CHU"
    assert ref["routing"][0]["provider_code"] == "DZ-SETIF-CHU"
    assert (
        "partenaire de jumelage national" in ref["routing"][0]["reasons"]
    )  # the referrer reads French
    assert ref["routing"][0]["score"] > ref["routing"][1]["score"]
    assert ref["patient"]["name"] == "Yacine Benali"  # the origin sees its own patient
    rid = ref["id"]

    seen = (await w.client.get(f"/api/referrals/{rid}", headers=w.h(w.setif_specialist))).json()
    assert seen["side"] == "provider" and "accept" in seen["actions"]
    assert seen["patient"]["pseudonym"].startswith("P-") and seen["patient"]["name"] is None

    accepted = await w.act(w.setif_specialist, rid, "accept")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    scheduled = await w.act(
        w.setif_specialist,
        rid,
        "schedule",
        {"kind": "teleconsult", "at": "2026-12-03T09:30:00+01:00"},
    )
    assert scheduled.json()["status"] == "scheduled"
    done = await w.act(
        w.setif_specialist,
        rid,
        "complete",
        {"findings": "Distal hypospadias.", "recommendations": "Repair at 12-18 months."},
    )
    assert done.json()["status"] == "completed"
    report = await w.client.get(f"/api/referrals/{rid}/report", headers=w.h(w.referrer))
    assert report.json()["recommendations"] == "Repair at 12-18 months."
    closed = await w.act(w.referrer, rid, "report/acknowledge", {"outcome": "improved"})
    assert closed.json()["status"] == "closed"
    history = (await w.client.get(f"/api/referrals/{rid}/history", headers=w.h(w.referrer))).json()
    assert [e["kind"] for e in history] == [
        "created",
        "submitted",
        "offered",
        "accepted",
        "scheduled",
        "completed",
        "closed",
    ]
