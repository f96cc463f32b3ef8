"""The radiologist's report on a share, and its delivery into the referral's timeline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.referral.referrals import tasks as referral_tasks
from shared import tasks
from shared.identity.models import Role, User
from shared.notifications.models import Notification
from shared.platform import Platform
from shared.settings import Settings
from tests.conftest import make_settings
from tests.factories import Factory
from tests.imaging.test_shares import Sharing, make_sharing

REPORT = {"findings": "No focal consolidation. No effusion.", "impression": "Normal chest CT."}


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, database_url: str) -> Settings:
    """On SQLite and on PostgreSQL: the delivery's row lock matters on the latter."""
    return make_settings(tmp_path, signing_key, database_url)


@pytest.fixture
async def sharing(factory: Factory, client: httpx.AsyncClient, platform: Platform) -> Sharing:
    return await make_sharing(factory, client, platform)


async def shared(sharing: Sharing) -> int:
    response = await sharing.share()
    assert response.status_code == 201, response.text
    share_id: int = response.json()["id"]
    return share_id


async def sign(sharing: Sharing, share_id: int, user: User | None = None) -> httpx.Response:
    return await sharing.client.post(
        f"/api/imaging/shares/{share_id}/report",
        json=REPORT,
        headers=sharing.h(user or sharing.provider_radiologist),
    )


def delivery_of(signed: dict[str, Any]) -> dict[str, Any]:
    """The task's arguments, as the imaging service sends them."""
    return {
        "report_id": signed["id"],
        "author_id": signed["author_id"],
        "author_name": signed["author_name"],
        "institution_id": None,
        "signed_at": signed["signed_at"],
        "impression": signed["impression"],
    }


async def imaging_events(sharing: Sharing) -> list[dict[str, Any]]:
    response = await sharing.client.get(
        f"/api/referrals/{sharing.referral_id}/history", headers=sharing.h(sharing.referrer)
    )
    assert response.status_code == 200, response.text
    return [e for e in response.json() if e["kind"] == "imaging_report"]


async def notifications_of(platform: Platform, user: User) -> list[Notification]:
    async with platform.database.transaction() as session:
        return list(
            await session.scalars(
                select(Notification).where(
                    Notification.user_id == user.id, Notification.kind == "imaging_report"
                )
            )
        )


async def test_a_provider_radiologist_signs_and_both_sides_read_it(sharing: Sharing) -> None:
    share_id = await shared(sharing)
    response = await sign(sharing, share_id)
    assert response.status_code == 201, response.text
    signed = response.json()
    assert signed["author_id"] == sharing.provider_radiologist.id
    assert signed["author_name"] == sharing.provider_radiologist.display_name
    assert signed["signed_at"]
    for reader in (sharing.referrer, sharing.provider_radiologist):
        got = await sharing.client.get(
            f"/api/imaging/shares/{share_id}/report", headers=sharing.h(reader)
        )
        assert got.status_code == 200, got.text
        assert got.json() == signed
        assert got.json()["findings"] == REPORT["findings"]
    audit = await sharing.audit("imaging.report.sign")
    assert [(e.outcome, e.resource_id) for e in audit] == [("ok", str(signed["id"]))]
    again = await sign(sharing, share_id)
    assert again.status_code == 409
    assert again.json()["rule"] == "report_already_signed"


async def test_delivery_adds_one_timeline_event_and_tells_the_referrer_in_french(
    sharing: Sharing, platform: Platform
) -> None:
    async with platform.database.transaction() as session:
        referrer = await session.get(User, sharing.referrer.id)
        assert referrer is not None
        referrer.languages = ["fr"]
    share_id = await shared(sharing)
    signed = (await sign(sharing, share_id)).json()
    report = delivery_of(signed)

    first = await referral_tasks.record_imaging_report(
        platform, referral_id=sharing.referral_id, share_id=share_id, report=report
    )
    second = await referral_tasks.record_imaging_report(
        platform, referral_id=sharing.referral_id, share_id=share_id, report=report
    )
    assert (first, second) == (True, False)
    events = await imaging_events(sharing)
    assert len(events) == 1
    assert events[0]["actor_name"] == signed["author_name"]
    assert events[0]["data"] == {
        "report_id": signed["id"],
        "share_id": share_id,
        "impression": REPORT["impression"],
    }
    [note] = await notifications_of(platform, sharing.referrer)
    assert note.lang == "fr"
    assert note.title == f"Compte rendu d'imagerie pour la demande n° {sharing.referral_id}"
    assert REPORT["impression"] in note.body


async def test_the_in_process_worker_delivers_the_report_after_commit(
    sharing: Sharing, platform: Platform
) -> None:
    share_id = await shared(sharing)
    tasks.use_platform(platform)
    worker = tasks.EmbeddedWorker(beat=False)
    worker.start()
    try:
        assert (await sign(sharing, share_id)).status_code == 201
        deadline = time.monotonic() + 30
        while not await imaging_events(sharing):
            assert time.monotonic() < deadline, "the report did not reach the timeline"
            await asyncio.sleep(0.1)
    finally:
        worker.stop()
        tasks.configure(Settings())
    assert len(await imaging_events(sharing)) == 1
    assert len(await notifications_of(platform, sharing.referrer)) == 1


async def test_callers_who_may_not_write_or_read_are_refused(
    sharing: Sharing, factory: Factory
) -> None:
    share_id = await shared(sharing)
    specialist = await factory.user(sharing.provider, Role.SPECIALIST)
    origin_radiologist = await factory.user(sharing.origin, Role.RADIOLOGIST)

    refused = await sign(sharing, share_id, specialist)
    assert refused.status_code == 403
    assert refused.json()["rule"] == "role_required"
    refused = await sign(sharing, share_id, origin_radiologist)
    assert refused.status_code == 403
    assert refused.json()["rule"] == "provider_only"
    assert (await sign(sharing, share_id, sharing.stranger)).status_code == 404

    url = f"/api/imaging/shares/{share_id}/report"
    missing = await sharing.client.get(url, headers=sharing.h(sharing.referrer))
    assert missing.status_code == 404  # no report yet
    assert (await sign(sharing, share_id)).status_code == 201
    stranger = await sharing.client.get(url, headers=sharing.h(sharing.stranger))
    assert stranger.status_code == 404
    refusals = await sharing.audit("imaging.report.sign")
    assert [e.rule for e in refusals if e.outcome == "refused"] == [
        "role_required",
        "provider_only",
    ]


async def test_a_revoked_share_takes_no_report(sharing: Sharing) -> None:
    share_id = await shared(sharing)
    revoked = await sharing.client.post(
        f"/api/imaging/shares/{share_id}/revoke", headers=sharing.h(sharing.referrer)
    )
    assert revoked.status_code == 200, revoked.text
    response = await sign(sharing, share_id)
    assert response.status_code == 409
    assert response.json()["rule"] == "share_not_ready"


async def test_findings_and_impression_are_required_and_limited(sharing: Sharing) -> None:
    share_id = await shared(sharing)
    url = f"/api/imaging/shares/{share_id}/report"
    headers = sharing.h(sharing.provider_radiologist)
    for body in (
        {"findings": "  ", "impression": "ok"},
        {"findings": "ok"},
        {"findings": "ok", "impression": "x" * 4001},
    ):
        response = await sharing.client.post(url, json=body, headers=headers)
        assert response.status_code == 422, body
