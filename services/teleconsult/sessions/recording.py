"""Recording consent, and the recording files kept with the session.

Recording is allowed only when every invited participant who joined has said
yes (`recording_allowed`); a participant may change their answer while the
session is open, and each answer is audited. Once an answer (or a join,
`joining`) leaves everyone who joined consenting, `RECORD_TASK` is sent after the
commit and starts the recorder process (`services.teleconsult.recorder`). The recorder's files are copied
under generated names in `data_dir/teleconsult/recordings`, with their size
and SHA-256; reading them follows the session's own visibility (the users of
the referral's two institutions), and every listing and download is audited.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from services.teleconsult.sessions import repository as repo
from services.teleconsult.sessions import schemas as s
from services.teleconsult.sessions.access import (
    RESOURCE,
    Attendee,
    attendee_participant,
    attendee_session,
    conflict,
    counterpart,
    forbidden,
    not_found,
    visible_session,
    words,
)
from services.teleconsult.sessions.models import Consent, Recording, SessionStatus, Teleconsult
from shared import audit
from shared.db import utcnow
from shared.identity.deps import Caller
from shared.problems import NotFound
from shared.settings import Settings
from shared.tasks import send_after_commit

RECORDING_PURPOSE = "recording"
RECORD_TASK = "teleconsult.record_session_task"
OPEN = frozenset({SessionStatus.SCHEDULED.value, SessionStatus.IN_PROGRESS.value})


def recordings_folder(settings: Settings) -> Path:
    return settings.data_dir / "teleconsult" / "recordings"


async def recording_allowed(session: AsyncSession, session_id: int) -> bool:
    """True when someone joined and every participant who joined consented to recording."""
    people = [p for p in await repo.participants(session, session_id) if p.first_joined_at]
    if not people:
        return False
    answers = await repo.consents(session, session_id)
    return all(answers.get(p.id) is not None and answers[p.id].granted for p in people)


async def consents(session: AsyncSession, row: Teleconsult) -> s.ConsentsRead:
    answers = await repo.consents(session, row.id)
    items = []
    for p in await repo.participants(session, row.id):
        answer = answers.get(p.id)
        items.append(
            s.ConsentRead(
                participant_id=p.id,
                peer=p.peer,
                display_name=p.display_name,
                kind=p.kind,
                joined=p.first_joined_at is not None,
                recording=answer.granted if answer is not None else None,
                decided_at=answer.decided_at if answer is not None else None,
            )
        )
    return s.ConsentsRead(
        recording_allowed=await recording_allowed(session, row.id), consents=items
    )


async def read_consents(session: AsyncSession, who: Attendee, *, session_id: int) -> s.ConsentsRead:
    row = await attendee_session(session, who, session_id, action="teleconsult.consent.read")
    return await consents(session, row)


async def give_consent(
    session: AsyncSession,
    who: Attendee,
    *,
    session_id: int,
    recording: bool,
    now: datetime | None = None,
) -> s.ConsentsRead:
    """A participant says yes or no to recording (a user, or the patient with its pass)."""
    action = "teleconsult.consent"
    row = await attendee_session(session, who, session_id, action=action, for_update=True)
    participant = await attendee_participant(session, who, row, action=action)
    if row.status not in OPEN:
        raise conflict(
            who.actor,
            action,
            "session_over",
            f"the session is {row.status}",
            row.id,
            lang=who.lang,
        )
    answer = (await repo.consents(session, row.id)).get(participant.id)
    if answer is None:
        answer = Consent(
            teleconsult_id=row.id, participant_id=participant.id, purpose=RECORDING_PURPOSE
        )
        session.add(answer)
    answer.granted, answer.decided_at = recording, now or utcnow()
    await session.flush()
    await audit.record(
        session,
        who.actor,
        action,
        resource_type=RESOURCE,
        resource_id=row.id,
        details={"peer": participant.peer, "recording": recording},
    )
    answers = await consents(session, row)
    start_recorder_if_allowed(session, row.id, allowed=answers.recording_allowed)
    return answers


def start_recorder_if_allowed(session: AsyncSession, session_id: int, *, allowed: bool) -> None:
    """Once `allowed` (`recording_allowed` now holds), start the recorder after the commit;
    a recorder already in the room makes this a no-op."""
    if allowed:
        send_after_commit(session, RECORD_TASK, session_id)


def _copy(source: bytes | Path, target: Path) -> tuple[int, str]:
    """Write `source` to `target`; its size and SHA-256 (blocking: run in a thread)."""
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, bytes):
        target.write_bytes(source)
        digest.update(source)
        return len(source), digest.hexdigest()
    with source.open("rb") as src, target.open("wb") as out:
        shutil.copyfileobj(src, out)
    size = 0
    with target.open("rb") as written:
        for block in iter(lambda: written.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


async def store_recording(
    session: AsyncSession,
    *,
    settings: Settings,
    session_id: int,
    source: bytes | Path,
    media_type: str = "video/mp4",
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
) -> Recording:
    """Keep a recorder's file (bytes, or a path that is copied: the caller removes its own).

    Refused (403 `recording_not_consented`, audited) unless `recording_allowed` holds
    now: a consent withdrawn during the recording stops it from being kept. Flushes only;
    on rollback the copied file stays orphaned under its generated name, never served.
    """
    action = "teleconsult.recording.store"
    actor = audit.Actor(username="recorder")
    row = await repo.get(session, session_id=session_id, institution_id=None)
    if row is None:
        raise not_found(actor, action, session_id)
    if not await recording_allowed(session, row.id):
        raise forbidden(
            actor,
            action,
            "recording_not_consented",
            "every participant who joined must consent to recording",
            row.id,
        )
    stored = uuid.uuid4().hex
    size, sha256 = await asyncio.to_thread(_copy, source, recordings_folder(settings) / stored)
    recording = Recording(
        teleconsult_id=row.id,
        stored_name=stored,
        media_type=media_type,
        size=size,
        sha256=sha256,
        started_at=started_at,
        ended_at=ended_at,
    )
    session.add(recording)
    await session.flush()
    await audit.record(
        session,
        actor,
        action,
        resource_type="teleconsult_recording",
        resource_id=recording.id,
        details={"teleconsult": row.id, "size": size, "sha256": sha256},
    )
    return recording


async def list_recordings(
    session: AsyncSession, caller: Caller, *, session_id: int
) -> list[Recording]:
    """The session's recordings, for the users of its two institutions; audited."""
    action = "teleconsult.recording.list"
    row = await visible_session(session, caller, session_id, action=action)
    found = await repo.recordings(session, row.id)
    await audit.record(
        session,
        caller.actor,
        action,
        resource_type=RESOURCE,
        resource_id=row.id,
        counterpart_id=counterpart(row, caller.institution_id),
        details={"recordings": [r.id for r in found]},
    )
    return found


async def open_recording(
    session: AsyncSession,
    caller: Caller,
    *,
    settings: Settings,
    session_id: int,
    recording_id: int,
) -> tuple[Recording, Path]:
    """A recording's file for download, for the users of the two institutions; audited."""
    action = "teleconsult.recording.read"
    row = await visible_session(session, caller, session_id, action=action)
    recording = await repo.recording(session, session_id=row.id, recording_id=recording_id)
    path = recordings_folder(settings) / recording.stored_name if recording else None
    if recording is None or path is None or not path.is_file():
        raise NotFound(words("no_recording", caller.lang, id=recording_id))
    await audit.record(
        session,
        caller.actor,
        action,
        resource_type="teleconsult_recording",
        resource_id=recording.id,
        counterpart_id=counterpart(row, caller.institution_id),
        details={"teleconsult": row.id},
    )
    return recording, path
