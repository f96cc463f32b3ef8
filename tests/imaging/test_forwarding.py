"""Forwarding a share into the provider's own Orthanc: idempotent, resumable, retried while down.

The partner is a real Orthanc on fixed free ports with a fixed password, so a test
can stop it and start a new process on the same ports and storage ("down, then back").
The shared copies are in the file store, as in test_shares.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from services.imaging.forwarding import service as forwarding
from services.imaging.forwarding.models import ForwardedInstance, Forwarding
from services.imaging.locations import shared_copies
from services.imaging.stores import OrthancStore, StoredInstance
from shared import tasks
from shared.identity.models import Role
from shared.platform import Platform
from shared.registry.models import Institution
from shared.settings import Settings
from tests.conftest import make_settings
from tests.factories import Factory
from tests.imaging.conftest import (
    ORTHANC,
    OrthancServer,
    _wait_until_ready,
    free_port,
    orthanc_configuration,
    require_orthanc,
)
from tests.imaging.test_shares import Sharing, make_sharing

USERNAME = "jisr-test"


@dataclass
class Partner:
    """The provider's own Orthanc: same folder, ports and password across restarts."""

    folder: Path
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    server: OrthancServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        require_orthanc()
        config = self.folder / "orthanc.json"
        config.write_text(
            json.dumps(
                orthanc_configuration(self.folder, self.http_port, self.dicom_port, self.password)
            )
        )
        log = self.folder / "orthanc.log"
        with log.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 (our own binary and configuration)
                [str(ORTHANC), str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.server = OrthancServer(self.url, USERNAME, self.password, process, log)
        _wait_until_ready(self.server)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    async def sop_instance_uids(self) -> set[str]:
        async with httpx.AsyncClient(auth=(USERNAME, self.password), timeout=10.0) as client:
            ids = (await client.get(f"{self.url}/instances")).json()
            found = set()
            for orthanc_id in ids:
                tags = (await client.get(f"{self.url}/instances/{orthanc_id}")).json()
                found.add(tags["MainDicomTags"]["SOPInstanceUID"])
            return found

    async def empty(self) -> None:
        async with httpx.AsyncClient(auth=(USERNAME, self.password), timeout=10.0) as client:
            for patient in (await client.get(f"{self.url}/patients")).json():
                (await client.delete(f"{self.url}/patients/{patient}")).raise_for_status()


@pytest.fixture(scope="module")
def partner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Partner]:
    require_orthanc()
    server = Partner(tmp_path_factory.mktemp("partner"))
    while server.dicom_port == server.http_port:
        server.dicom_port = free_port()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, sqlite_url: str, partner: Partner) -> Settings:
    """The platform's Orthanc credentials are the partner's (settings.orthanc_*)."""
    return make_settings(
        tmp_path,
        signing_key,
        sqlite_url,
        orthanc_username=USERNAME,
        orthanc_password=partner.password,
    )


@dataclass
class Forwarded:
    sharing: Sharing
    partner: Partner
    share_id: int
    shared_study_uid: str
    coordinator_headers: dict[str, str]

    async def start(self, user_headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.sharing.client.post(
            f"/api/imaging/shares/{self.share_id}/forward",
            headers=user_headers or self.coordinator_headers,
        )

    async def progress(self, user_headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.sharing.client.get(
            f"/api/imaging/shares/{self.share_id}/forwarding",
            headers=user_headers or self.coordinator_headers,
        )

    async def shared_uids(self) -> set[str]:
        async with shared_copies(self.sharing.platform) as store:
            return {ref.sop_instance_uid for ref in await store.instances(self.shared_study_uid)}

    async def confirmations(self, forwarding_id: int) -> int:
        async with self.sharing.platform.database.transaction() as session:
            count = await session.scalar(
                select(func.count()).where(ForwardedInstance.forwarding_id == forwarding_id)
            )
            return int(count or 0)

    async def row(self, forwarding_id: int) -> Forwarding:
        async with self.sharing.platform.database.transaction() as session:
            row = await session.get(Forwarding, forwarding_id)
            assert row is not None
            return row


@pytest.fixture
async def forwarded(
    factory: Factory, client: httpx.AsyncClient, platform: Platform, partner: Partner
) -> Forwarded:
    await partner.empty()
    sharing = await make_sharing(factory, client, platform)
    async with platform.database.transaction() as session:
        provider = await session.get(Institution, sharing.provider.id)
        assert provider is not None
        provider.imaging_store = partner.url
    response = await sharing.share()
    assert response.status_code == 201, response.text
    coordinator = await factory.user(sharing.origin, Role.COORDINATOR)
    return Forwarded(
        sharing,
        partner,
        response.json()["id"],
        response.json()["shared_study_uid"],
        factory.headers(coordinator),
    )


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SOP Instance UIDs sent to any Orthanc, in order."""
    sent: list[str] = []
    original = OrthancStore.put

    async def counting(self: OrthancStore, data: bytes) -> StoredInstance:
        stored = await original(self, data)
        sent.append(stored.sop_instance_uid)
        return stored

    monkeypatch.setattr(OrthancStore, "put", counting)
    return sent


async def started(f: Forwarded) -> int:
    response = await f.start()
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "pending"
    forwarding_id: int = response.json()["id"]
    return forwarding_id


# -- tests ---------------------------------------------------------------------------------


async def test_a_forwarded_share_lands_de_identified_in_the_partner_store_and_is_audited(
    forwarded: Forwarded, puts: list[str]
) -> None:
    forwarding_id = await started(forwarded)

    state = await forwarding.forward(forwarded.sharing.platform, forwarding_id=forwarding_id)

    assert state == "done"
    shared = await forwarded.shared_uids()
    assert len(shared) == 5
    assert await forwarded.partner.sop_instance_uids() == shared
    assert sorted(puts) == sorted(shared)
    provider_view = await forwarded.progress(
        forwarded.sharing.h(forwarded.sharing.provider_radiologist)
    )
    assert provider_view.status_code == 200, provider_view.text
    body = provider_view.json()
    assert (body["state"], body["sent"], body["total"], body["attempts"]) == ("done", 5, 5, 0)
    assert body["last_error"] is None
    events = await forwarded.sharing.audit("imaging.forward")
    assert [(e.outcome, e.counterpart_id, e.resource_id) for e in events] == [
        ("allowed", forwarded.sharing.provider.id, str(forwarded.share_id))
    ]
    assert [e.outcome for e in await forwarded.sharing.audit("imaging.forward.start")] == ["ok"]


async def test_running_the_task_twice_sends_nothing_twice(
    forwarded: Forwarded, puts: list[str]
) -> None:
    forwarding_id = await started(forwarded)
    platform = forwarded.sharing.platform
    assert await forwarding.forward(platform, forwarding_id=forwarding_id) == "done"
    # A redelivered task (the worker died before it acknowledged) finds the row running.
    async with platform.database.transaction() as session:
        row = await session.get(Forwarding, forwarding_id)
        assert row is not None
        row.state = "running"

    assert await forwarding.forward(platform, forwarding_id=forwarding_id) == "done"
    assert await forwarding.forward(platform, forwarding_id=forwarding_id) == "done"

    assert len(puts) == 5
    assert len(await forwarded.partner.sop_instance_uids()) == 5
    assert await forwarded.confirmations(forwarding_id) == 5
    again = await forwarded.start()
    assert again.status_code == 200 and again.json()["id"] == forwarding_id


async def test_a_forwarding_resumes_after_the_last_confirmed_instance(
    forwarded: Forwarded, puts: list[str]
) -> None:
    forwarding_id = await started(forwarded)
    first, second, *rest = sorted(await forwarded.shared_uids())
    platform = forwarded.sharing.platform
    async with platform.database.transaction() as session:
        session.add(ForwardedInstance(forwarding_id=forwarding_id, sop_instance_uid=first))
    # The partner already holds another one, unconfirmed: it is asked, not sent to.
    async with (
        shared_copies(platform) as source,
        OrthancStore(forwarded.partner.url, USERNAME, forwarded.partner.password) as target,
    ):
        await target.put(await source.get(second))
    puts.clear()

    assert await forwarding.forward(platform, forwarding_id=forwarding_id) == "done"

    assert sorted(puts) == sorted(rest)
    assert await forwarded.confirmations(forwarding_id) == 5
    assert (await forwarded.row(forwarding_id)).sent == 5


async def test_a_partner_that_is_down_is_retried_and_completes_when_it_comes_back(
    forwarded: Forwarded, partner: Partner
) -> None:
    forwarding_id = await started(forwarded)
    platform = forwarded.sharing.platform
    partner.stop()
    try:
        with pytest.raises(forwarding.RetryLater) as retry:
            await forwarding.forward(platform, forwarding_id=forwarding_id)
        assert retry.value.countdown == 10
        row = await forwarded.row(forwarding_id)
        assert (row.state, row.attempts, row.sent) == ("pending", 1, 0)
        assert row.last_error and row.next_attempt_at is not None

        with pytest.raises(forwarding.RetryLater) as retry:
            await forwarding.forward(platform, forwarding_id=forwarding_id)
        assert retry.value.countdown == 20
        assert (
            await forwarding.forward(platform, forwarding_id=forwarding_id, last_attempt=True)
            == "failed"
        )
        body = (await forwarded.progress()).json()
        assert (body["state"], body["attempts"]) == ("failed", 3)
        assert body["last_error"]
        restarted = await forwarded.start()  # a failed forwarding starts again
        assert restarted.status_code == 200
        assert (restarted.json()["state"], restarted.json()["attempts"]) == ("pending", 0)
    finally:
        partner.start()  # a new process on the same ports and storage

    assert await forwarding.forward(platform, forwarding_id=forwarding_id) == "done"
    body = (await forwarded.progress()).json()
    assert (body["state"], body["sent"], body["total"], body["last_error"]) == ("done", 5, 5, None)
    assert await partner.sop_instance_uids() == await forwarded.shared_uids()


async def test_only_the_origin_may_forward_and_strangers_see_nothing(
    forwarded: Forwarded,
) -> None:
    s = forwarded.sharing
    assert (await forwarded.progress()).status_code == 404  # not forwarded yet
    provider = await forwarded.start(s.h(s.provider_radiologist))
    assert provider.status_code == 403, provider.text
    assert provider.json()["rule"] == "origin_only"
    referrer = await forwarded.start(s.h(s.referrer))
    assert referrer.status_code == 403, referrer.text
    await started(forwarded)
    assert (await forwarded.start(s.h(s.stranger))).status_code == 404
    assert (await forwarded.progress(s.h(s.stranger))).status_code == 404
    assert (await forwarded.progress(s.h(s.provider_radiologist))).status_code == 200


async def test_a_provider_without_an_imaging_store_cannot_be_forwarded_to(
    forwarded: Forwarded,
) -> None:
    async with forwarded.sharing.platform.database.transaction() as session:
        provider = await session.get(Institution, forwarded.sharing.provider.id)
        assert provider is not None
        provider.imaging_store = None

    response = await forwarded.start()

    assert response.status_code == 422, response.text


async def test_the_in_process_worker_forwards_a_share_sent_after_commit(
    forwarded: Forwarded, platform: Platform
) -> None:
    tasks.use_platform(platform)
    worker = tasks.EmbeddedWorker(beat=False)
    worker.start()
    try:
        forwarding_id = await started(forwarded)
        await wait_for_state(forwarded, forwarding_id, "done")
    finally:
        worker.stop()
        tasks.configure(Settings())
    assert len(await forwarded.partner.sop_instance_uids()) == 5


async def wait_for_state(f: Forwarded, forwarding_id: int, state: str) -> Forwarding:
    deadline = time.monotonic() + 30
    while (row := await f.row(forwarding_id)).state != state:
        assert time.monotonic() < deadline, f"forwarding is {row.state}: {row.last_error}"
        await asyncio.sleep(0.1)
    return row
