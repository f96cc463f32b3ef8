"""Recording consent, and recordings kept with the session under the referral's access rules."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from services.teleconsult.sessions import recording, service
from services.teleconsult.sessions.models import Recording
from shared.problems import Forbidden
from tests.teleconsult.conftest import Clinic

MEDIA = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64


async def in_session(clinic: Clinic, **overrides: Any) -> dict[str, Any]:
    created = await clinic.scheduled(**overrides)
    for user in (clinic.referrer, clinic.specialist):
        assert (await clinic.join(user, created["id"])).status_code == 200
    return created


async def allowed(clinic: Clinic, sid: int) -> bool:
    async with clinic.platform.database.transaction() as session:
        return await service.recording_allowed(session, sid)


async def store(clinic: Clinic, sid: int, source: bytes | Path = MEDIA) -> Recording:
    async with clinic.platform.database.transaction() as session:
        return await service.store_recording(
            session, settings=clinic.platform.settings, session_id=sid, source=source
        )


async def test_recording_needs_everyone_who_joined(clinic: Clinic) -> None:
    created = await in_session(clinic, patient={"display_name": "Y.", "language": "ar"})
    sid = created["id"]
    path = f"/api/teleconsults/{sid}/consent"
    assert not await allowed(clinic, sid)
    yes = await clinic.post(clinic.referrer, path, {"recording": True})
    assert yes.status_code == 200, yes.text
    assert yes.json()["recording_allowed"] is False
    last = await clinic.post(clinic.specialist, path, {"recording": True})
    # The patient was invited but has not joined: the two who joined decide.
    assert last.json()["recording_allowed"] is True
    assert await allowed(clinic, sid)

    # The patient joins and has not answered: recording stops being allowed.
    guest = await clinic.post(
        None,
        f"/api/teleconsults/{sid}/join/guest",
        {"secret": created["patient_link"]["secret"]},
    )
    assert guest.status_code == 200
    assert not await allowed(clinic, sid)
    auth = {"Authorization": f"Bearer {guest.json()['session_pass']}"}
    answered = await clinic.post(None, path, {"recording": True}, headers=auth)
    assert answered.status_code == 200, answered.text
    assert answered.json()["recording_allowed"] is True
    read = await clinic.client.get(path, headers=auth)
    assert read.status_code == 200
    by_kind = {c["kind"]: c for c in read.json()["consents"]}
    assert by_kind["patient"]["recording"] is True and by_kind["patient"]["joined"] is True

    withdrawn = await clinic.post(clinic.specialist, path, {"recording": False})
    assert withdrawn.json()["recording_allowed"] is False
    events = await clinic.audit("teleconsult.consent")
    assert [e.details["recording"] for e in events] == [True, True, True, False]
    assert events[2].actor_username == f"guest:{created['patient_link']['participant_id']}"


async def test_refused_consents(clinic: Clinic) -> None:
    created = await in_session(clinic)
    path = f"/api/teleconsults/{created['id']}/consent"
    outsider = await clinic.post(clinic.provider_radiologist, path, {"recording": True})
    assert (outsider.status_code, outsider.json()["rule"]) == (403, "not_invited")
    assert (await clinic.post(clinic.stranger, path, {"recording": True})).status_code == 404
    assert (await clinic.get(clinic.stranger, path)).status_code == 404
    for vague in ("yes", 1, None):
        answer = await clinic.post(clinic.referrer, path, {"recording": vague})
        assert answer.status_code == 422, vague
    ended = await clinic.post(
        clinic.referrer, f"/api/teleconsults/{created['id']}/end", {"outcome": "completed"}
    )
    assert ended.status_code == 200
    late = await clinic.post(clinic.referrer, path, {"recording": True})
    assert (late.status_code, late.json()["rule"]) == (409, "session_over")
    assert await clinic.refusals("teleconsult.consent") == [
        "not_invited",
        "not_visible",
        "session_over",
    ]


async def test_a_recording_is_kept_only_with_consent_and_read_under_audit(
    clinic: Clinic, tmp_path: Path
) -> None:
    created = await in_session(clinic)
    sid = created["id"]
    with pytest.raises(Forbidden) as refused:
        await store(clinic, sid)
    assert refused.value.refusal is not None
    assert refused.value.refusal.rule == "recording_not_consented"
    for user in (clinic.referrer, clinic.specialist):
        consent = f"/api/teleconsults/{sid}/consent"
        assert (await clinic.post(user, consent, {"recording": True})).status_code == 200
    kept = await store(clinic, sid)
    assert (kept.size, kept.sha256) == (len(MEDIA), hashlib.sha256(MEDIA).hexdigest())
    source = tmp_path / "recorder-output.mp4"
    source.write_bytes(MEDIA[::-1])
    from_file = await store(clinic, sid, source)
    assert from_file.sha256 == hashlib.sha256(MEDIA[::-1]).hexdigest()
    stored = recording.recordings_folder(clinic.platform.settings) / from_file.stored_name
    assert stored.read_bytes() == MEDIA[::-1]

    listing = await clinic.get(clinic.specialist, f"/api/teleconsults/{sid}/recordings")
    assert listing.status_code == 200
    assert [r["id"] for r in listing.json()] == [kept.id, from_file.id]
    # The referral's two institutions read it, even their users who were not in the call.
    for reader in (clinic.referrer, clinic.provider_radiologist):
        got = await clinic.get(reader, f"/api/teleconsults/{sid}/recordings/{kept.id}")
        assert got.status_code == 200, got.text
        assert got.content == MEDIA
        assert got.headers["content-type"] == "video/mp4"
        assert got.headers["cache-control"] == "no-store"
    reads = await clinic.audit("teleconsult.recording.read")
    assert [(e.actor_id, e.resource_id) for e in reads] == [
        (clinic.referrer.id, str(kept.id)),
        (clinic.provider_radiologist.id, str(kept.id)),
    ]
    assert len(await clinic.audit("teleconsult.recording.list")) == 1
    assert len(await clinic.audit("teleconsult.recording.store")) == 2

    stranger = await clinic.get(clinic.stranger, f"/api/teleconsults/{sid}/recordings/{kept.id}")
    assert stranger.status_code == 404
    assert (
        await clinic.get(clinic.stranger, f"/api/teleconsults/{sid}/recordings")
    ).status_code == 404
    missing = await clinic.get(clinic.referrer, f"/api/teleconsults/{sid}/recordings/999999")
    assert missing.status_code == 404
    assert await clinic.refusals("teleconsult.recording.read") == ["not_visible"]
    assert await clinic.refusals("teleconsult.recording.list") == ["not_visible"]
