"""The consented recorder: a server-side aiortc peer that records a session, in its own process.

`jisr teleconsult-recorder --session N` asks the sessions service for a
recorder ticket (`recorder_grant`: refused unless every participant who joined
consented), joins the room over the real signalling socket as
`RoomRole.RECORDER` with the platform's ICE servers from that ticket (never
aiortc's public default), records each participant with `MediaRecorder`
(`recording.capture`), and hands every file to `store_recording`, which keeps
it with the session under the same access rules (and refuses it if a consent
was withdrawn meanwhile).

Why a process of its own: aiortc decodes and re-encodes every stream inside
its event loop (about 15% of a core per stream on our machines), so a recorder
in the signalling process would delay every room's messages. Consent is checked again whenever someone joins and every few seconds:
once it no longer holds, the recorder leaves and discards what it recorded.

The sessions service sends the Celery task `teleconsult.record_session_task`
after a consent or a join once `recording_allowed` holds; the task only spawns
this process and returns, so no worker, not even the embedded one inside the
web process, hosts the media. A pid file per session, checked and written under
an exclusive `flock`, makes a second spawn a no-op while the first recorder
lives; a recorder that leaves because consent no longer holds decides so under
the same lock and gives up its pid file first, so a consent that arrives while
it leaves starts a new one instead of being lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from services.teleconsult.recording.capture import RoomCapture
from services.teleconsult.recording.room import RoomError, pin_host_addresses
from services.teleconsult.sessions.joining import recorder_grant
from services.teleconsult.sessions.models import Teleconsult
from services.teleconsult.sessions.recording import recording_allowed, store_recording
from shared import audit
from shared.db import utcnow
from shared.platform import Platform
from shared.problems import JisrError
from shared.settings import Settings

log = logging.getLogger("jisr.teleconsult.recorder")

MEDIA_TYPE = "video/x-matroska"
EXIT_REFUSED = 3
"""The sessions service refused the recorder (no consent, session not in progress) or the room did."""
EXIT_NOTHING = 4
"""The recorder joined but no media reached it."""
CONSENT_CHECK_S = 5.0
CONSENT_WITHDRAWN = "consent withdrawn during the recording"


@dataclass
class Outcome:
    stored: list[int] = field(default_factory=list)
    """Ids of the `Recording` rows kept."""
    refused: str | None = None
    files: list[Path] = field(default_factory=list)


def time_left(ends_at: datetime, *, overrun_s: int, now: datetime) -> float:
    """Seconds the recorder may still run: until the session's slot plus its overrun, as
    long as anyone may join; a room left without an end does not keep it running."""
    return max(0.0, (ends_at - now).total_seconds() + overrun_s)


def signalling_base(settings: Settings) -> str:
    """Where the recorder reaches the signalling socket: `recorder_signalling_url`, else
    this machine's own service."""
    if settings.recorder_signalling_url:
        return settings.recorder_signalling_url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    return f"ws://{host}:{settings.port}"


async def record(
    platform: Platform,
    session_id: int,
    *,
    signalling: str,
    origin: str | None = None,
    max_duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    joined: asyncio.Event | None = None,
    consent_check_s: float = CONSENT_CHECK_S,
) -> Outcome:
    """Record session `session_id` until it ends (or `stop` is set); store what was recorded.

    Consent is checked again whenever the room changes and every `consent_check_s`: once
    it no longer holds, the recorder leaves and keeps nothing."""
    try:
        async with platform.database.transaction() as session:
            ticket = await recorder_grant(session, platform, session_id=session_id)
            row = await session.get(Teleconsult, session_id)
    except JisrError as exc:
        if exc.refusal is not None:
            await audit.write_refusal(platform.database, exc.refusal)
        log.warning("recorder refused for session %s: %s", session_id, exc.detail)
        return Outcome(refused=exc.detail or exc.slug)
    if row is not None:
        limit = time_left(
            row.ends_at, overrun_s=platform.settings.teleconsult_overrun_s, now=utcnow()
        )
        max_duration_s = limit if max_duration_s is None else min(max_duration_s, limit)
    url = f"{signalling.rstrip('/')}{ticket.ws_url}?token={ticket.token}"
    work = Path(tempfile.mkdtemp(prefix=f"jisr-recorder-{session_id}-"))
    capture = RoomCapture(url, work, ice_servers=ticket.ice_servers, origin=origin)
    started_at = utcnow()
    try:
        try:
            await capture.open()
        except RoomError as exc:
            log.warning("the room refused the recorder: %s", exc)
            return Outcome(refused=str(exc))
        if joined is not None:
            joined.set()
        stop = stop or asyncio.Event()
        withdrawn = asyncio.Event()
        watcher = asyncio.ensure_future(
            _watch_consent(platform, session_id, capture, stop, withdrawn, consent_check_s)
        )
        try:
            files = await _run(capture, max_duration_s=max_duration_s, stop=stop)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if withdrawn.is_set():
            # Someone in the room has not consented (any more): nothing recorded is kept.
            log.warning(
                "session %s: consent no longer given; the recording is discarded", session_id
            )
            return Outcome(refused=CONSENT_WITHDRAWN)
        return Outcome(
            stored=await _store(platform, session_id, files, started_at, utcnow()), files=files
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _watch_consent(
    platform: Platform,
    session_id: int,
    capture: RoomCapture,
    stop: asyncio.Event,
    withdrawn: asyncio.Event,
    every_s: float,
) -> None:
    """Stop the moment recording is no longer allowed: a consent withdrawn, or someone new
    who has not consented joined. Checked when the room changes and every `every_s`."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(capture.changed.wait(), every_s)
        capture.changed.clear()
        if not await _still_allowed(platform, session_id):
            withdrawn.set()
            stop.set()
            return


async def _still_allowed(platform: Platform, session_id: int) -> bool:
    """Whether recording is still allowed, decided under the pid file's lock; when it is not,
    this recorder gives up its pid file before leaving.

    A consent committed before this read keeps the recorder; one committed after it sends
    a task whose `spawn` takes the lock after this, finds no live pid and starts afresh."""
    marker = pid_file(platform.settings, session_id)
    held = await asyncio.to_thread(_lock, marker)
    try:
        async with platform.database.transaction() as session:
            allowed = await recording_allowed(session, session_id)
        if not allowed:
            held.seek(0)
            if held.read().strip() == str(os.getpid()):
                held.truncate(0)
        return allowed
    finally:
        held.close()


async def _run(
    capture: RoomCapture, *, max_duration_s: float | None, stop: asyncio.Event
) -> list[Path]:
    running = asyncio.ensure_future(capture.run(max_duration_s=max_duration_s))
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if running in done:
        stopping.cancel()
        return running.result()
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    return await capture.stop()


async def _store(
    platform: Platform, session_id: int, files: list[Path], started: datetime, ended: datetime
) -> list[int]:
    kept: list[int] = []
    for path in files:
        try:
            async with platform.database.transaction() as session:
                row = await store_recording(
                    session,
                    settings=platform.settings,
                    session_id=session_id,
                    source=path,
                    media_type=MEDIA_TYPE,
                    started_at=started,
                    ended_at=ended,
                )
                kept.append(row.id)
        except JisrError as exc:
            log.warning("recording %s of session %s not kept: %s", path.name, session_id, exc)
    return kept


# The process ------------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """`jisr teleconsult-recorder`: the recorder process of one session."""
    parser = sub.add_parser(
        "teleconsult-recorder", help="record a consented teleconsult (its own process)"
    )
    parser.add_argument("--session", type=int, required=True)
    parser.add_argument(
        "--signalling", help="base URL of the signalling socket (default: this machine's service)"
    )
    parser.add_argument("--origin", help="Origin header to send (when origins are restricted)")
    parser.add_argument(
        "--host-address",
        action="append",
        default=[],
        help="gather ICE host candidates on this address only (repeatable)",
    )
    parser.add_argument("--max-duration", type=float, default=None, help="seconds")
    parser.add_argument(
        "--consent-check",
        type=float,
        default=CONSENT_CHECK_S,
        help="seconds between consent checks (also checked whenever someone joins)",
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Run the recorder; exit 0 when something was stored, 3 when refused, 4 when nothing was."""
    addresses = args.host_address or (
        [settings.recorder_host_address] if settings.recorder_host_address else []
    )
    if addresses:
        pin_host_addresses(addresses)
    platform = Platform.from_settings(settings)

    async def body() -> Outcome:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await record(
                platform,
                args.session,
                signalling=args.signalling or signalling_base(settings),
                origin=args.origin,
                max_duration_s=args.max_duration,
                stop=stop,
                consent_check_s=args.consent_check,
            )
        finally:
            await platform.database.dispose()

    outcome = asyncio.run(body())
    if outcome.refused is not None:
        print(f"recorder refused: {outcome.refused}", file=sys.stderr, flush=True)
        return EXIT_REFUSED
    print(f"stored recordings: {outcome.stored}", flush=True)
    return 0 if outcome.stored else EXIT_NOTHING


def pid_file(settings: Settings, session_id: int) -> Path:
    return settings.data_dir / "teleconsult" / "recorders" / f"{session_id}.pid"


def _alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped by another worker process) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _lock(marker: Path) -> IO[str]:
    """`marker` opened (created if need be) and locked exclusively; closing it unlocks."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    held = marker.open("a+")
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
    except BaseException:
        held.close()
        raise
    return held


@contextlib.contextmanager
def _locked(marker: Path) -> Iterator[IO[str]]:
    held = _lock(marker)
    try:
        yield held
    finally:
        held.close()


def command(session_id: int, *extra: str) -> list[str]:
    """The recorder process's command line (this interpreter, `jisr teleconsult-recorder`)."""
    return [
        sys.executable,
        "-m",
        "jisr.cli",
        "teleconsult-recorder",
        "--session",
        str(session_id),
        *extra,
    ]


def spawn(settings: Settings, session_id: int, *, extra: list[str] | None = None) -> int:
    """Start the recorder process for `session_id` unless one already runs; its pid.

    Check and start happen under an exclusive lock on the pid file, so two concurrent
    calls (two workers, two threads) start one process. The recorder reaches the
    signalling socket at `signalling_base(settings)`; `extra` arguments come last."""
    reap()
    marker = pid_file(settings, session_id)
    with _locked(marker) as held:
        held.seek(0)
        with contextlib.suppress(ValueError):
            pid = int(held.read().strip())
            if _alive(pid):
                return pid
        options = ["--signalling", signalling_base(settings)]
        if settings.recorder_host_address:
            options += ["--host-address", settings.recorder_host_address]
        with marker.with_suffix(".log").open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command(session_id, *options, *(extra or [])),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        held.truncate(0)
        held.write(str(process.pid))
        held.flush()
    _children.append(process)
    return process.pid


_children: list[subprocess.Popen[bytes]] = []
"""Recorders this process spawned, kept so they are reaped (`reap`) rather than left as zombies."""


def reap() -> list[int]:
    """Exit codes of the spawned recorders that have finished (they leave the list)."""
    done = [p for p in _children if p.poll() is not None]
    for process in done:
        _children.remove(process)
    return [int(p.returncode) for p in done]
