"""The consented recorder: its own process, the real signalling socket, files with video frames.

Two aiortc peers (the host and an admitted participant) talk through the real
signalling socket served by uvicorn on a loopback port; the recorder runs as
`jisr teleconsult-recorder` in a process of its own, joins as the recorder,
records both, and hands its files to `store_recording`. Without everyone's
consent it is refused (and the refusal audited), and nothing is stored.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, VideoStreamTrack
from aiortc.mediastreams import AudioStreamTrack
from celery import signals
from fastapi import FastAPI
from sqlalchemy import select

from services.teleconsult import recorder
from services.teleconsult.pages.router import router as pages_router
from services.teleconsult.recording.room import RoomPeer, configuration, pin_host_addresses
from services.teleconsult.recording.tasks import TASK
from services.teleconsult.sessions.models import (
    Recording,
)
from services.teleconsult.sessions.recording import recordings_folder
from services.teleconsult.sessions.router import router as sessions_router
from services.teleconsult.signalling.router import router as signalling_router
from shared import health, tasks
from shared.audit import AuditEvent
from shared.db import utcnow
from shared.platform import Platform
from shared.settings import Settings
from shared.web import make_app
from tests.conftest import make_settings
from tests.teleconsult.conftest import Clinic
from tests.teleconsult.peers import serve

TIMEOUT_S = 30.0
ROOT = Path(__file__).parents[2]


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, sqlite_url: str) -> Settings:
    """SQLite only, no STUN or TURN: media on loopback, host candidates (the DB is not under test)."""
    return make_settings(tmp_path, signing_key, sqlite_url)


def teleconsult_app(platform: Platform) -> FastAPI:
    """The teleconsult routes (REST, signalling, page) as one app, on the test's platform."""
    return make_app(
        "teleconsult test",
        [health.router, sessions_router, signalling_router, pages_router],
        platform=platform,
    )


@dataclass
class Served:
    base: str

    @property
    def ws(self) -> str:
        return self.base.replace("http", "ws", 1)


@pytest.fixture(name="served")
async def served_fixture(platform: Platform) -> AsyncIterator[Served]:
    """The teleconsult routes served by uvicorn on a loopback port, in the test's event loop."""
    async with serve(teleconsult_app(platform)) as base:
        yield Served(base)


@pytest.fixture(name="loopback_candidates", autouse=True)
def loopback_candidates_fixture() -> Iterator[None]:
    """aioice skips 127.0.0.1: hermetic tests gather host candidates there only."""
    import aioice.ice

    original = aioice.ice.get_host_addresses
    pin_host_addresses(["127.0.0.1"])
    yield
    aioice.ice.get_host_addresses = original


@dataclass
class Room:
    """A session in progress: both participants joined through `POST .../join` (host first)."""

    clinic: Clinic
    session_id: int
    tickets: list[dict[str, Any]]
    """The join API's answers: token, ICE servers (coturn REST-API credentials), ws_url, role."""


async def make_room(clinic: Clinic, *, consents: tuple[bool | None, ...] = (True, True)) -> Room:
    """Ouargla's referrer hosts AP-HP's specialist; each answers the recording consent or not."""
    session_id = (await clinic.scheduled())["id"]
    people = (clinic.referrer, clinic.specialist)
    tickets = []
    for user in people:
        joined = await clinic.join(user, session_id)
        assert joined.status_code == 200, joined.text
        tickets.append(joined.json())
    for user, granted in zip(people, consents, strict=True):
        if granted is not None:
            answer = await clinic.post(
                user, f"/api/teleconsults/{session_id}/consent", {"recording": granted}
            )
            assert answer.status_code == 200, answer.text
    return Room(clinic, session_id, tickets)


def join_url(served: Served, ticket: dict[str, Any]) -> str:
    return f"{served.ws}{ticket['ws_url']}?token={ticket['token']}"


@dataclass
class MediaPeer:
    """An aiortc peer sending a test pattern and a tone, noting the frames it receives."""

    url: str
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    relay_only: bool = False
    room: RoomPeer | None = None
    frames: dict[str, int] = field(default_factory=dict)
    got_frame: asyncio.Event = field(default_factory=asyncio.Event)
    messages: list[dict[str, Any]] = field(default_factory=list)
    message_seen: asyncio.Condition = field(default_factory=asyncio.Condition)
    task: asyncio.Task[None] | None = None
    readers: set[asyncio.Future[None]] = field(default_factory=set)
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when ICE fails on any of this peer's connections (W3C `RTCIceConnectionState`)."""

    async def _connection(self, remote: str) -> RTCPeerConnection:
        pc = RTCPeerConnection(configuration(self.ice_servers, relay_only=self.relay_only))
        pc.addTrack(VideoStreamTrack())
        pc.addTrack(AudioStreamTrack())

        @pc.on("iceconnectionstatechange")
        def on_ice() -> None:
            if pc.iceConnectionState == "failed":
                self.failed.set()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                reader = asyncio.ensure_future(self._count(remote, track))
                self.readers.add(reader)
                reader.add_done_callback(self.readers.discard)

        return pc

    async def _count(self, remote: str, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except Exception:
                return
            self.frames[remote] = self.frames.get(remote, 0) + 1
            self.got_frame.set()

    async def _on_message(self, message: dict[str, Any]) -> None:
        async with self.message_seen:
            self.messages.append(message)
            self.message_seen.notify_all()

    async def wait_message(self, predicate: Any) -> dict[str, Any]:
        async def found() -> dict[str, Any]:
            async with self.message_seen:
                while True:
                    for message in self.messages:
                        if predicate(message):
                            return message
                    await self.message_seen.wait()

        return await asyncio.wait_for(found(), TIMEOUT_S)

    async def join(self) -> None:
        self.room = RoomPeer(self.url, self._connection, on_message=self._on_message)
        welcome = await self.room.open()
        self.task = asyncio.ensure_future(self.room.run())
        if not welcome.waiting:
            await self.room.offer_to_room()

    async def close(self) -> None:
        if self.room is not None:
            await self.room.close()
        if self.task is not None:
            await asyncio.wait_for(self.task, TIMEOUT_S)


@pytest.fixture(name="peers")
async def peers_fixture() -> AsyncIterator[list[MediaPeer]]:
    made: list[MediaPeer] = []
    yield made
    for peer in made:
        await peer.close()


async def admitted_pair(
    served: Served, room: Room, peers: list[MediaPeer]
) -> tuple[MediaPeer, MediaPeer]:
    """The host joins, the participant waits, the host admits it; both receive frames."""
    host = MediaPeer(join_url(served, room.tickets[0]))
    guest = MediaPeer(join_url(served, room.tickets[1]))
    peers += [host, guest]
    await host.join()
    await guest.join()
    assert guest.room is not None and guest.room.welcome is not None
    assert guest.room.welcome.waiting
    waiting = await host.wait_message(lambda m: m["type"] == "peer-joined" and m["waiting"])
    assert host.room is not None
    await host.room.send({"type": "admit", "peer_id": waiting["peer_id"]})
    await asyncio.wait_for(host.got_frame.wait(), TIMEOUT_S)
    await asyncio.wait_for(guest.got_frame.wait(), TIMEOUT_S)
    return host, guest


def recorder_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "JISR_ENVIRONMENT": "test",
        "JISR_DATA_DIR": str(settings.data_dir),
        "JISR_DATABASE_URL": settings.resolved_database_url,
        "JISR_SIGNING_KEY_PATH": str(settings.key_path),
        "JISR_LOG_JSON": "false",
        "JISR_SEED_DEMO": "false",
    }


async def start_recorder(
    settings: Settings, served: Served, session_id: int, *extra: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *recorder.command(
            session_id, "--signalling", served.ws, "--host-address", "127.0.0.1", *extra
        ),
        cwd=ROOT,
        env=recorder_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def video_packets_sent(pc: RTCPeerConnection) -> int:
    report = await pc.getStats()
    return sum(
        int(getattr(s, "packetsSent", 0))
        for s in report.values()
        if s.type == "outbound-rtp" and getattr(s, "kind", "") == "video"
    )


async def until(predicate: Any) -> None:
    """Wait (with a deadline) for a condition only `getStats()` shows: it has no event to await."""

    async def poll() -> None:
        while not await predicate():  # noqa: ASYNC110 - getStats() has no change event
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), TIMEOUT_S)


async def until_recorder_fed(recorder_id: str, *senders: MediaPeer) -> None:
    """Until every sender has sent the recorder a few seconds of video."""

    async def fed() -> bool:
        for peer in senders:
            pc = peer.room.connections.get(recorder_id) if peer.room else None
            if pc is None or await video_packets_sent(pc) < 60:
                return False
        return True

    await until(fed)


def count_video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        if not container.streams.video:
            return 0
        return sum(1 for _ in container.decode(video=0))


async def test_the_recorder_records_both_participants_in_its_own_process(
    platform: Platform, clinic: Clinic, served: Served, peers: list[MediaPeer]
) -> None:
    room = await make_room(clinic)
    host, guest = await admitted_pair(served, room, peers)

    process = await start_recorder(platform.settings, served, room.session_id)
    try:
        joined = await host.wait_message(
            lambda m: m["type"] == "peer-joined" and m.get("role") == "recorder"
        )
        assert joined["peer_id"] != host.room.welcome.peer_id  # type: ignore[union-attr]
        recorder_id = joined["peer_id"]

        await until_recorder_fed(recorder_id, host, guest)
        assert host.room is not None
        await host.room.send({"type": "end"})
        output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output.decode()
    assert process.pid != os.getpid()

    async with platform.database.transaction() as session:
        kept = list(
            (
                await session.scalars(
                    select(Recording).where(Recording.teleconsult_id == room.session_id)
                )
            ).all()
        )
    assert len(kept) == 2
    for recording in kept:
        path = recordings_folder(platform.settings) / recording.stored_name
        assert path.stat().st_size == recording.size
        assert recording.media_type == recorder.MEDIA_TYPE
        assert count_video_frames(path) > 10


async def test_without_everyones_consent_the_recorder_is_refused(
    platform: Platform, clinic: Clinic, served: Served, peers: list[MediaPeer]
) -> None:
    room = await make_room(clinic, consents=(True, None))
    await admitted_pair(served, room, peers)

    process = await start_recorder(platform.settings, served, room.session_id)
    output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT_S)

    assert process.returncode == recorder.EXIT_REFUSED, output.decode()
    assert b"consent" in output
    async with platform.database.transaction() as session:
        kept = (
            await session.scalars(
                select(Recording).where(Recording.teleconsult_id == room.session_id)
            )
        ).all()
        refusals = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "teleconsult.recorder_join")
            )
        ).all()
    assert kept == []
    assert [r.rule for r in refusals] == ["recording_not_consented"]
    assert not recordings_folder(platform.settings).exists() or not any(
        recordings_folder(platform.settings).iterdir()
    )


async def test_a_withdrawn_consent_is_refused_in_process(
    platform: Platform, clinic: Clinic, served: Served
) -> None:
    """`record()` itself (as the process runs it) refuses a session where someone said no."""
    room = await make_room(clinic, consents=(True, False))
    outcome = await recorder.record(platform, room.session_id, signalling=served.ws)
    assert outcome.refused is not None and "consent" in outcome.refused
    assert outcome.stored == []


async def test_the_task_spawns_one_recorder_per_session_outside_the_caller(
    platform: Platform,
    clinic: Clinic,
    served: Served,
    peers: list[MediaPeer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`record_session_task` spawns `jisr teleconsult-recorder`; a second call finds the first."""
    room = await make_room(clinic)
    host, guest = await admitted_pair(served, room, peers)
    for name, value in recorder_env(platform.settings).items():
        if name.startswith("JISR_"):
            monkeypatch.setenv(name, value)
    extra = ["--signalling", served.ws, "--host-address", "127.0.0.1"]

    pid = recorder.spawn(platform.settings, room.session_id, extra=extra)
    try:
        assert pid != os.getpid()
        assert recorder.spawn(platform.settings, room.session_id, extra=extra) == pid
        assert recorder.pid_file(platform.settings, room.session_id).read_text() == str(pid)
        joined = await host.wait_message(
            lambda m: m["type"] == "peer-joined" and m.get("role") == "recorder"
        )
        await until_recorder_fed(joined["peer_id"], host, guest)
        assert host.room is not None
        await host.room.send({"type": "end"})
        (child,) = [p for p in recorder._children if p.pid == pid]
        code = await asyncio.wait_for(asyncio.to_thread(child.wait), TIMEOUT_S)
    finally:
        for process in recorder._children:
            if process.poll() is None:
                process.kill()
                process.wait()
    log = recorder.pid_file(platform.settings, room.session_id).with_suffix(".log")
    assert code == 0, log.read_text()
    assert recorder.reap() == [0]


async def test_a_consent_withdrawn_while_recording_stops_the_recorder_and_nothing_is_kept(
    platform: Platform, clinic: Clinic, served: Served, peers: list[MediaPeer]
) -> None:
    room = await make_room(clinic)
    host, guest = await admitted_pair(served, room, peers)
    process = await start_recorder(
        platform.settings, served, room.session_id, "--consent-check", "0.5"
    )
    try:
        joined = await host.wait_message(
            lambda m: m["type"] == "peer-joined" and m.get("role") == "recorder"
        )
        await until_recorder_fed(joined["peer_id"], host, guest)
        withdrawn = await clinic.post(
            clinic.specialist, f"/api/teleconsults/{room.session_id}/consent", {"recording": False}
        )
        assert withdrawn.status_code == 200, withdrawn.text
        # The recorder leaves the room by itself (the others see it go) and keeps nothing.
        await host.wait_message(
            lambda m: m["type"] == "peer-left" and m["peer_id"] == joined["peer_id"]
        )
        output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == recorder.EXIT_REFUSED, output.decode()
    assert recorder.CONSENT_WITHDRAWN.encode() in output
    async with platform.database.transaction() as session:
        kept = (
            await session.scalars(
                select(Recording).where(Recording.teleconsult_id == room.session_id)
            )
        ).all()
    assert kept == []


# The trigger: consents and joins start the recorder through the Celery task --------------------


@dataclass
class Published:
    """The tasks this process published (Celery's `after_task_publish`): name and arguments;
    and what the worker's runs returned (`task_postrun`), by task id."""

    sent: list[tuple[str, list[Any]]] = field(default_factory=list)
    returned: dict[str, Any] = field(default_factory=dict)
    ran: threading.Condition = field(default_factory=threading.Condition)

    def published(self, sender: str | None = None, body: Any = None, **_: Any) -> None:
        self.sent.append((str(sender), list(body[0]) if body else []))

    def finished(self, task_id: str = "", retval: Any = None, **_: Any) -> None:
        with self.ran:
            self.returned[task_id] = retval
            self.ran.notify_all()

    def of(self, name: str) -> list[list[Any]]:
        return [args for sent, args in self.sent if sent == name]

    def wait_for(self, task_id: str) -> Any:
        """What the worker's run of `task_id` returned, once it ran (blocking)."""
        with self.ran:
            assert self.ran.wait_for(lambda: task_id in self.returned, TIMEOUT_S)
            return self.returned[task_id]


@pytest.fixture(name="recorder_worker")
def recorder_worker_fixture(
    platform: Platform, served: Served, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Published]:
    """A real Celery worker (embedded, solo pool) with the recorder settings a deployment sets:
    the signalling socket of the served app, and a loopback host candidate. The recorder
    process it spawns reads the same settings from its environment."""
    update = {"recorder_signalling_url": served.ws, "recorder_host_address": "127.0.0.1"}
    env = {
        **recorder_env(platform.settings),
        "JISR_RECORDER_SIGNALLING_URL": served.ws,
        "JISR_RECORDER_HOST_ADDRESS": "127.0.0.1",
    }
    for name, value in env.items():
        if name.startswith("JISR_"):
            monkeypatch.setenv(name, value)
    settings = platform.settings.model_copy(update=update)
    tasks.use_platform(Platform(settings, platform.database, platform.keyring, None))
    published = Published()
    signals.after_task_publish.connect(published.published, weak=False)
    signals.task_postrun.connect(published.finished, weak=False)
    worker = tasks.EmbeddedWorker(beat=False)
    worker.start()
    try:
        yield published
    finally:
        worker.stop()
        signals.after_task_publish.disconnect(published.published)
        signals.task_postrun.disconnect(published.finished)
        tasks.configure(Settings())
        for process in list(recorder._children):
            if process.poll() is None:
                process.kill()
            process.wait()
        recorder.reap()


@dataclass
class HalfConsented:
    """Both joined and are in the room with media; the host said yes, the specialist not yet."""

    room: Room
    host: MediaPeer
    guest: MediaPeer
    published: Published


@pytest.fixture(name="half_consented")
async def half_consented_fixture(
    clinic: Clinic, served: Served, peers: list[MediaPeer], recorder_worker: Published
) -> HalfConsented:
    room = await make_room(clinic, consents=(True, None))
    host, guest = await admitted_pair(served, room, peers)
    return HalfConsented(room, host, guest, recorder_worker)


async def test_the_last_consent_starts_the_recorder_by_itself_and_it_records_the_room(
    platform: Platform, clinic: Clinic, half_consented: HalfConsented
) -> None:
    """Nothing starts while the specialist has not answered; its yes sends the task once, the
    worker spawns the recorder process, which joins the room and stores both participants."""
    room, host, guest = half_consented.room, half_consented.host, half_consented.guest
    recorder_worker = half_consented.published
    marker = recorder.pid_file(platform.settings, room.session_id)
    # Both joined and the host said yes: the joins and that consent sent nothing (the task is
    # sent after the commit, before the API answers), so no recorder can start.
    assert recorder_worker.of(TASK) == []
    assert not marker.exists()

    said = await clinic.post(
        clinic.specialist, f"/api/teleconsults/{room.session_id}/consent", {"recording": True}
    )
    assert said.status_code == 200, said.text
    assert recorder_worker.of(TASK) == [[room.session_id]]
    joined = await host.wait_message(
        lambda m: m["type"] == "peer-joined" and m.get("role") == "recorder"
    )
    await until_recorder_fed(joined["peer_id"], host, guest)
    (child,) = recorder._children
    assert marker.read_text() == str(child.pid) and child.pid != os.getpid()
    assert host.room is not None
    await host.room.send({"type": "end"})
    code = await asyncio.wait_for(asyncio.to_thread(child.wait), TIMEOUT_S)
    assert code == 0, marker.with_suffix(".log").read_text()

    async with platform.database.transaction() as session:
        kept = (
            await session.scalars(
                select(Recording).where(Recording.teleconsult_id == room.session_id)
            )
        ).all()
    assert len(kept) == 2
    for recording in kept:
        assert count_video_frames(recordings_folder(platform.settings) / recording.stored_name) > 10


async def test_a_consent_given_again_after_a_withdrawal_starts_a_new_recorder(
    platform: Platform, clinic: Clinic, half_consented: HalfConsented
) -> None:
    """The specialist withdraws: the recorder leaves (giving up its pid file) and keeps nothing.
    Its yes again, while that process may still be winding down, starts a second one."""
    room, host, guest = half_consented.room, half_consented.host, half_consented.guest
    sid = room.session_id
    consent = f"/api/teleconsults/{sid}/consent"
    yes = await clinic.post(clinic.specialist, consent, {"recording": True})
    assert yes.status_code == 200, yes.text
    first = await host.wait_message(
        lambda m: m["type"] == "peer-joined" and m.get("role") == "recorder"
    )
    (leaving,) = recorder._children
    no = await clinic.post(clinic.specialist, consent, {"recording": False})
    assert no.status_code == 200, no.text
    await host.wait_message(lambda m: m["type"] == "peer-left" and m["peer_id"] == first["peer_id"])
    yes = await clinic.post(clinic.specialist, consent, {"recording": True})
    assert yes.status_code == 200, yes.text
    again = await host.wait_message(
        lambda m: m is not first and m["type"] == "peer-joined" and m.get("role") == "recorder"
    )
    log = recorder.pid_file(platform.settings, sid).with_suffix(".log")
    assert await asyncio.wait_for(asyncio.to_thread(leaving.wait), TIMEOUT_S) == (
        recorder.EXIT_REFUSED
    ), log.read_text()
    (second,) = [p for p in recorder._children if p is not leaving]
    assert recorder.pid_file(platform.settings, sid).read_text() == str(second.pid)
    await until_recorder_fed(again["peer_id"], host, guest)
    assert host.room is not None
    await host.room.send({"type": "end"})
    assert await asyncio.wait_for(asyncio.to_thread(second.wait), TIMEOUT_S) == 0, log.read_text()
    async with platform.database.transaction() as session:
        kept = (
            await session.scalars(select(Recording).where(Recording.teleconsult_id == sid))
        ).all()
    assert len(kept) == 2  # the second recorder's files; the first kept nothing


async def test_without_everyones_consent_no_task_is_sent_and_no_recorder_starts(
    platform: Platform, clinic: Clinic, recorder_worker: Published
) -> None:
    """A yes and a no, then a no changed from a yes: the task is never sent. A task sent by
    hand (as a retry or a stale message would) runs to the end on the worker and spawns nothing."""
    room = await make_room(clinic, consents=(True, False))
    sid = room.session_id
    withdrawn = await clinic.post(
        clinic.referrer, f"/api/teleconsults/{sid}/consent", {"recording": False}
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert recorder_worker.of(TASK) == []

    sent = tasks.celery_app.send_task(TASK, args=[sid])
    # The worker ran it (and everything queued before it: one solo worker, FIFO) and spawned
    # nothing: recording is not allowed.
    assert await asyncio.to_thread(recorder_worker.wait_for, sent.id) is None
    assert not recorder.pid_file(platform.settings, sid).exists()
    assert recorder._children == []


async def test_a_join_that_leaves_everyone_consenting_sends_the_task(clinic: Clinic) -> None:
    """Both say yes before joining (nobody joined: nothing to record); each join then finds
    everyone who joined consenting and sends the task (the second is a no-op spawn)."""
    published = Published()
    signals.after_task_publish.connect(published.published, weak=False)
    try:
        sid = (await clinic.scheduled())["id"]
        for user in (clinic.referrer, clinic.specialist):
            said = await clinic.post(user, f"/api/teleconsults/{sid}/consent", {"recording": True})
            assert said.status_code == 200, said.text
            assert said.json()["recording_allowed"] is False
        assert published.of(TASK) == []
        refused = await clinic.join(clinic.stranger, sid)
        assert refused.status_code == 404
        assert published.of(TASK) == []
        for sent, user in enumerate((clinic.referrer, clinic.specialist), start=1):
            joined = await clinic.join(user, sid)
            assert joined.status_code == 200, joined.text
            assert published.of(TASK) == [[sid]] * sent
    finally:
        signals.after_task_publish.disconnect(published.published)


async def test_two_concurrent_spawns_start_one_recorder(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers taking the task at once: the pid file's lock lets one start the process.
    (Session 999 does not exist: the one recorder started is refused and exits 3.)"""
    for name, value in recorder_env(platform.settings).items():
        if name.startswith("JISR_"):
            monkeypatch.setenv(name, value)
    start = threading.Barrier(4)

    def race() -> int:
        start.wait(TIMEOUT_S)
        return recorder.spawn(platform.settings, 999)

    try:
        pids = await asyncio.gather(*(asyncio.to_thread(race) for _ in range(4)))
        assert len(set(pids)) == 1
        (child,) = recorder._children
        assert child.pid == pids[0]
        code = await asyncio.wait_for(asyncio.to_thread(child.wait), TIMEOUT_S)
    finally:
        for process in list(recorder._children):
            if process.poll() is None:
                process.kill()
            process.wait()
    assert code == recorder.EXIT_REFUSED
    assert recorder.reap() == [recorder.EXIT_REFUSED]


def test_the_recorder_may_run_until_the_slot_and_its_overrun_and_no_longer() -> None:
    ends = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    assert recorder.time_left(ends, overrun_s=600, now=ends - timedelta(minutes=5)) == 900
    assert recorder.time_left(ends, overrun_s=600, now=ends + timedelta(minutes=20)) == 0


async def test_a_room_left_without_an_end_does_not_keep_its_recorder(
    platform: Platform, clinic: Clinic, served: Served, peers: list[MediaPeer]
) -> None:
    """Nobody ends the session: the recorder stops at the slot's end plus its overrun and
    keeps what it recorded."""
    room = await make_room(clinic)
    host, guest = await admitted_pair(served, room, peers)
    platform.settings.teleconsult_overrun_s = 10
    now = utcnow()
    await clinic.move_slot(room.session_id, now - timedelta(minutes=20), minutes=20)

    recording = asyncio.ensure_future(
        recorder.record(platform, room.session_id, signalling=served.ws)
    )
    joined = await host.wait_message(
        lambda m: m["type"] == "peer-joined" and m.get("role") == "recorder"
    )
    await until_recorder_fed(joined["peer_id"], host, guest)
    outcome = await asyncio.wait_for(recording, TIMEOUT_S)

    assert outcome.refused is None
    assert len(outcome.stored) == 2
    assert utcnow() >= now + timedelta(seconds=10)
