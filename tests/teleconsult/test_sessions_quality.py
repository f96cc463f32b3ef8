"""Quality samples from the browsers, the session report, and low-bandwidth mode."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.teleconsult.sessions import repository
from services.teleconsult.sessions.models import Teleconsult
from shared.db import utcnow
from tests.teleconsult.conftest import Clinic


def sample(**values: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "measured_at": utcnow().isoformat(),
        "rtt_ms": 80.0,
        "packet_loss_pct": 0.5,
        "audio_in_kbps": 32.0,
        "audio_out_kbps": 32.0,
        "video_in_kbps": 450.0,
        "video_out_kbps": 500.0,
    }
    body.update(values)
    return body


async def backdate_samples(clinic: Clinic, sid: int) -> None:
    """Move every sample of the session a few seconds back, as if time had passed."""
    async with clinic.platform.database.transaction() as session:
        for row in await repository.samples(session, sid):
            row.received_at = row.received_at - timedelta(seconds=5)


async def test_samples_make_the_report(clinic: Clinic) -> None:
    created = await clinic.scheduled()
    sid = created["id"]
    path = f"/api/teleconsults/{sid}/stats"
    for user in (clinic.referrer, clinic.specialist):
        assert (await clinic.join(user, sid)).status_code == 200
    for rtt in (40.0, 60.0, 80.0, 100.0, 300.0):
        posted = await clinic.post(clinic.referrer, path, sample(rtt_ms=rtt))
        assert posted.status_code == 204, posted.text
        await backdate_samples(clinic, sid)
    posted = await clinic.post(clinic.specialist, path, sample(rtt_ms=None, packet_loss_pct=4))
    assert posted.status_code == 204, posted.text

    report = await clinic.get(clinic.specialist, f"/api/teleconsults/{sid}/report")
    assert report.status_code == 200, report.text
    people = {p["peer"]: p for p in report.json()["participants"]}
    mine = people[f"user:{clinic.referrer.id}"]["quality"]
    assert mine["samples"] == 5
    assert mine["rtt_ms"]["median"] == 80.0
    assert mine["rtt_ms"]["p95"] == 260.0  # between 100 and 300, by interpolation
    assert mine["video_out_kbps"] == {"median": 500.0, "p95": 500.0}
    theirs = people[f"user:{clinic.specialist.id}"]["quality"]
    assert (theirs["samples"], theirs["rtt_ms"]["median"]) == (1, None)
    assert theirs["packet_loss_pct"]["median"] == 4.0
    assert people[f"user:{clinic.referrer.id}"]["first_joined_at"] is not None
    assert report.json()["status"] == "in_progress"

    stranger = await clinic.get(clinic.stranger, f"/api/teleconsults/{sid}/report")
    assert stranger.status_code == 404
    assert await clinic.refusals("teleconsult.report") == ["not_visible"]


async def test_samples_are_bounded_and_rate_limited(clinic: Clinic) -> None:
    created = await clinic.scheduled()
    sid = created["id"]
    path = f"/api/teleconsults/{sid}/stats"
    before = await clinic.post(clinic.referrer, path, sample())
    assert (before.status_code, before.json()["rule"]) == (409, "not_in_session")
    assert (await clinic.join(clinic.referrer, sid)).status_code == 200
    for bad in (
        sample(rtt_ms=-1),
        sample(packet_loss_pct=101),
        sample(video_in_kbps=1e9),
        sample(measured_at="2030-01-01T00:00:00"),
        sample(jitter_ms=3),
    ):
        assert (await clinic.post(clinic.referrer, path, bad)).status_code == 422, bad
    ahead = await clinic.post(
        clinic.referrer, path, sample(measured_at=(utcnow() + timedelta(hours=1)).isoformat())
    )
    assert (ahead.status_code, ahead.json()["rule"]) == (422, "clock_ahead")
    assert (await clinic.post(clinic.referrer, path, sample())).status_code == 204
    flood = await clinic.post(clinic.referrer, path, sample())
    assert (flood.status_code, flood.json()["rule"]) == (429, "sample_rate")
    assert flood.json()["title"] == "Too many requests"
    # Invited but not joined, not invited, not visible.
    waiting = await clinic.post(clinic.specialist, path, sample())
    assert (waiting.status_code, waiting.json()["rule"]) == (409, "not_in_session")
    outsider = await clinic.post(clinic.provider_radiologist, path, sample())
    assert (outsider.status_code, outsider.json()["rule"]) == (403, "not_invited")
    assert (await clinic.post(clinic.stranger, path, sample())).status_code == 404
    assert await clinic.refusals("teleconsult.stats") == [
        "not_in_session",
        "not_in_session",
        "not_invited",
        "not_visible",
    ]


async def test_the_patient_posts_samples_with_its_pass(clinic: Clinic) -> None:
    created = await clinic.scheduled(patient={"display_name": "Y.", "language": "fr"})
    sid = created["id"]
    joined = await clinic.post(
        None,
        f"/api/teleconsults/{sid}/join/guest",
        {"secret": created["patient_link"]["secret"]},
    )
    auth = {"Authorization": f"Bearer {joined.json()['session_pass']}"}
    posted = await clinic.post(None, f"/api/teleconsults/{sid}/stats", sample(), headers=auth)
    assert posted.status_code == 204, posted.text
    report = (await clinic.get(clinic.referrer, f"/api/teleconsults/{sid}/report")).json()
    patient = next(p for p in report["participants"] if p["kind"] == "patient")
    assert patient["quality"]["samples"] == 1


async def test_the_host_switches_low_bandwidth_mode(clinic: Clinic) -> None:
    created = await clinic.scheduled()
    sid = created["id"]
    path = f"/api/teleconsults/{sid}"
    switched = await clinic.client.patch(
        path, json={"low_bandwidth": True}, headers=clinic.h(clinic.referrer)
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["low_bandwidth"] is True
    assert (await clinic.join(clinic.specialist, sid)).json()["low_bandwidth"] is True
    refused = await clinic.client.patch(
        path, json={"low_bandwidth": False}, headers=clinic.h(clinic.specialist)
    )
    assert (refused.status_code, refused.json()["rule"]) == (403, "host_only")
    hidden = await clinic.client.patch(
        path, json={"low_bandwidth": False}, headers=clinic.h(clinic.stranger)
    )
    assert hidden.status_code == 404
    assert await clinic.refusals("teleconsult.update") == ["host_only", "not_visible"]
    async with clinic.platform.database.transaction() as session:
        row = await session.get(Teleconsult, sid)
        assert row is not None and row.low_bandwidth is True
