"""C-STORE pick-up: studies a modality pushes into the institution's Orthanc become known."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from services.imaging.pickup import service
from services.imaging.pickup.models import OrthancCursor
from services.imaging.pickup.tasks import poll_stores_task
from shared import audit, tasks
from shared.platform import Platform
from shared.registry.models import Institution
from shared.settings import Settings
from tests.factories import Factory
from tests.imaging import factories as dicom
from tests.imaging.conftest import MODALITY_NAME, DicomPeers, OrthancServer, empty, free_port

DEADLINE = 30.0


def client(server: OrthancServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, auth=(server.username, server.password), timeout=10.0
    )


async def upload(server: OrthancServer, study_uid: str, count: int = 1) -> str:
    """`POST /instances` of `count` instances of one study; the Orthanc study id."""
    async with client(server) as http:
        series = generate_uid()
        answer: dict[str, Any] = {}
        for _ in range(count):
            response = await http.post(
                "/instances", content=dicom.instance(study_uid=study_uid, series_uid=series)
            )
            response.raise_for_status()
            answer = response.json()
        return str(answer["ParentStudy"])


async def c_store(peers: DicomPeers, study_uid: str, count: int = 1) -> str:
    """Put a study in the modality Orthanc and push it to the institution's by C-STORE."""
    study_id = await upload(peers.modality, study_uid, count)
    async with client(peers.modality) as http:
        response = await http.post(
            f"/modalities/{MODALITY_NAME}/store",
            json={"Resources": [study_id], "Synchronous": True},
        )
        response.raise_for_status()
    return study_id


async def wait_stable(server: OrthancServer, *study_ids: str) -> None:
    """Poll the change log until each study has its `StableStudy` change, within a deadline."""
    deadline = time.monotonic() + DEADLINE
    async with client(server) as http:
        while True:
            changes = (await http.get("/changes", params={"limit": 10000})).json()["Changes"]
            stable = {c["ID"] for c in changes if c["ChangeType"] == "StableStudy"}
            if set(study_ids) <= stable:
                return
            assert time.monotonic() < deadline, f"studies not stable: {set(study_ids) - stable}"
            await asyncio.sleep(0.2)


async def last_change(server: OrthancServer) -> int:
    async with client(server) as http:
        return int((await http.get("/changes", params={"limit": 0})).json()["Last"])


async def institution_on(
    platform: Platform, factory: Factory, server: OrthancServer | None, url: str | None = None
) -> Institution:
    institution = await factory.institution()
    async with platform.database.transaction() as session:
        row = await session.get(Institution, institution.id)
        assert row is not None
        row.imaging_store = url or (server.url if server else None)
    if server is not None:
        platform.settings.orthanc_username = server.username
        platform.settings.orthanc_password = server.password
    return institution


async def stored_events(platform: Platform) -> list[audit.AuditEvent]:
    async with platform.database.transaction() as session:
        rows = await session.scalars(
            select(audit.AuditEvent)
            .where(audit.AuditEvent.action == "imaging.store")
            .order_by(audit.AuditEvent.id)
        )
        return list(rows)


@pytest.fixture
async def peers(dicom_peers: DicomPeers) -> DicomPeers:
    await empty(dicom_peers.institution)
    await empty(dicom_peers.modality)
    return dicom_peers


async def test_a_c_stored_study_is_picked_up_once_and_a_restart_resumes(
    peers: DicomPeers, platform: Platform, factory: Factory
) -> None:
    institution = await institution_on(platform, factory, peers.institution)
    uploaded = generate_uid()  # through the REST API, as STOW-RS does: audited by STOW-RS already
    uploaded_id = await upload(peers.institution, uploaded)
    pushed = generate_uid()
    pushed_id = await c_store(peers, pushed, count=2)
    await wait_stable(peers.institution, uploaded_id, pushed_id)

    first = await service.poll_stores(platform)

    assert first.recorded == {institution.code: [pushed]}
    assert first.skipped == {}
    events = await stored_events(platform)
    assert [(e.resource_type, e.resource_id, e.institution_id) for e in events] == [
        ("study", pushed, institution.id)
    ]
    assert events[0].actor_username == "system"
    assert events[0].details == {
        "via": "c-store",
        "study_uid": pushed,
        "instances": 2,
        "calling_aets": ["MODALITY"],
    }

    again = await service.poll_stores(platform)
    assert again.recorded == {institution.code: []}
    assert len(await stored_events(platform)) == 1

    # A restart: new platform objects on the same database resume from the cursor.
    await platform.database.dispose()
    restarted = Platform.from_settings(platform.settings)
    try:
        async with restarted.database.transaction() as session:
            cursor = await session.get(OrthancCursor, institution.id)
            assert cursor is not None
            assert cursor.last_change == await last_change(peers.institution)
        later = generate_uid()
        later_id = await c_store(peers, later)
        await wait_stable(peers.institution, later_id)

        resumed = await service.poll_stores(restarted)

        assert resumed.recorded == {institution.code: [later]}
        assert [e.resource_id for e in await stored_events(restarted)] == [pushed, later]
    finally:
        await restarted.database.dispose()


async def test_a_store_that_is_down_is_skipped_and_the_others_are_processed(
    peers: DicomPeers,
    platform: Platform,
    factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = await institution_on(platform, factory, None, url=f"http://127.0.0.1:{free_port()}")
    live = await institution_on(platform, factory, peers.institution)
    pushed = generate_uid()
    await wait_stable(peers.institution, await c_store(peers, pushed))
    tasks.use_platform(platform)
    try:
        with caplog.at_level(logging.WARNING, logger="jisr.imaging.pickup"):
            outcome = await asyncio.to_thread(poll_stores_task.apply)
    finally:
        tasks.close_worker_loops()
        tasks.configure(Settings())

    assert outcome.successful(), outcome.traceback
    result = outcome.get()
    assert result["recorded"] == {live.code: [pushed]}
    assert list(result["skipped"]) == [down.code]
    assert "cannot be reached" in result["skipped"][down.code]
    warnings = [r for r in caplog.records if r.name == "jisr.imaging.pickup"]
    assert [down.code in r.getMessage() for r in warnings] == [True]
    assert [e.resource_id for e in await stored_events(platform)] == [pushed]
    async with platform.database.transaction() as session:
        assert await session.get(OrthancCursor, down.id) is None
