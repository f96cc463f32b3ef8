"""`/api/teleconsults`: schedule, list, read, join, end, quality, consent and recordings."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from fastapi.responses import FileResponse

from services.teleconsult.sessions import joining, quality, recording, service, views
from services.teleconsult.sessions import schemas as s
from services.teleconsult.sessions.deps import AttendeeDep
from services.teleconsult.sessions.models import Recording
from services.teleconsult.signalling.router import announce
from shared.i18n import negotiate
from shared.identity.deps import CurrentUser, PlatformDep, Session
from shared.pagination import Page, Paging

router = APIRouter(prefix="/api/teleconsults", tags=["teleconsults"])


@router.post("", response_model=s.TeleconsultCreated, status_code=201)
async def create_teleconsult(
    body: s.TeleconsultCreate, session: Session, caller: CurrentUser, platform: PlatformDep
) -> s.TeleconsultCreated:
    """Schedule a teleconsultation for an accepted referral; the caller hosts it.

    403 when the agreement refuses teleconsultation (with the rule) or a participant is
    of neither institution; 409 for a referral that is not accepted or scheduled. With a
    patient invitation, the answer carries the one-time link secret, shown only here.
    """
    created = await service.create(session, caller, settings=platform.settings, body=body)
    read = await views.read_one(session, created.row, caller_institution=caller.institution_id)
    return s.TeleconsultCreated(**read.model_dump(), patient_link=created.patient_link)


@router.get("", response_model=Page[s.TeleconsultRead])
async def list_teleconsults(
    session: Session,
    caller: CurrentUser,
    paging: Paging,
    referral_id: Annotated[int | None, Query(description="only this referral's sessions")] = None,
) -> Page[s.TeleconsultRead]:
    """Sessions the caller's institution takes part in, latest slot first."""
    rows, pagination = await service.list_sessions(
        session, caller, paging=paging, referral_id=referral_id
    )
    items = await views.read_many(session, rows, caller_institution=caller.institution_id)
    return Page[s.TeleconsultRead](items=items, pagination=pagination)


@router.get("/{session_id}", response_model=s.TeleconsultRead)
async def get_teleconsult(
    session_id: int, session: Session, caller: CurrentUser
) -> s.TeleconsultRead:
    """One session, its slot in each participant's time zone and in the caller's; 404 unless
    the caller's institution takes part."""
    row = await service.get(session, caller, session_id=session_id)
    return await views.read_one(session, row, caller_institution=caller.institution_id)


@router.patch("/{session_id}", response_model=s.TeleconsultRead)
async def update_teleconsult(
    session_id: int, body: s.TeleconsultUpdate, session: Session, caller: CurrentUser
) -> s.TeleconsultRead:
    """The host switches low-bandwidth mode (audio and low-resolution video)."""
    row = await service.update(session, caller, session_id=session_id, body=body)
    return await views.read_one(session, row, caller_institution=caller.institution_id)


@router.post("/{session_id}/cancel", response_model=s.TeleconsultRead)
async def cancel_teleconsult(
    session_id: int, body: s.CancelBody, session: Session, caller: CurrentUser
) -> s.TeleconsultRead:
    """An invited clinician cancels a session that has not begun; the quota unit is released."""
    row = await service.cancel(session, caller, session_id=session_id, reason=body.reason)
    return await views.read_one(session, row, caller_institution=caller.institution_id)


@router.post("/{session_id}/join", response_model=s.JoinRead)
async def join_teleconsult(
    session_id: int, session: Session, who: AttendeeDep, platform: PlatformDep
) -> s.JoinRead:
    """A join token, the ICE servers (STUN, TURN with time-limited credentials) and the
    signalling socket's path, for an invited participant inside the session's window while
    the agreement still allows it (refusals are audited). The join token opens the socket
    once: a client that reconnects asks here again. A patient sends its session pass, which
    stays good until the window closes."""
    ticket = await joining.join(session, who, platform=platform, session_id=session_id)
    return s.JoinRead(**asdict(ticket))


@router.post("/{session_id}/join/guest", response_model=s.JoinRead)
async def join_teleconsult_as_guest(
    session_id: int, body: s.GuestJoin, request: Request, session: Session, platform: PlatformDep
) -> s.JoinRead:
    """The patient joins with its one-time link secret (no account); the secret is spent,
    and the answer adds a session pass for joining again, quality samples and consent."""
    ticket = await joining.join_as_guest(
        session,
        platform=platform,
        session_id=session_id,
        secret=body.secret,
        lang=negotiate(request.headers.get("accept-language")),
    )
    return s.JoinRead(**asdict(ticket))


@router.post("/{session_id}/end", response_model=s.TeleconsultRead)
async def end_teleconsult(
    session_id: int,
    body: s.EndBody,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
    after_response: BackgroundTasks,
) -> s.TeleconsultRead:
    """The host or a participant of the provider ends the session with its outcome; the
    duration and outcome go to the referral's timeline, the quota unit is consumed
    (completed) or released (no_show, technical_failure), and everyone still in the
    room gets `ended` (on every replica) once the end is committed."""
    await service.get(session, caller, session_id=session_id, action="teleconsult.end")
    row = await service.end(
        session,
        session_id=session_id,
        ended_by=f"user:{caller.user_id}",
        outcome=body.outcome.value,
        note=body.note,
        lang=caller.lang,
    )
    after_response.add_task(
        announce,
        platform,
        session_id,
        {"type": "ended", "by": f"user:{caller.user_id}", "outcome": body.outcome.value},
    )
    return await views.read_one(session, row, caller_institution=caller.institution_id)


@router.post("/{session_id}/stats", status_code=204)
async def post_stats(
    session_id: int, body: s.StatsSample, session: Session, who: AttendeeDep
) -> Response:
    """A participant's `getStats()` summary (round-trip time, loss, bitrates); one per second
    at most (429 beyond)."""
    await quality.post_sample(session, who, session_id=session_id, body=body)
    return Response(status_code=204)


@router.get("/{session_id}/report", response_model=s.ReportRead)
async def get_report(session_id: int, session: Session, caller: CurrentUser) -> s.ReportRead:
    """The session report: participants, join and leave times, duration, outcome, and each
    participant's quality (median and 95th percentile)."""
    return await quality.report(session, caller, session_id=session_id)


@router.post("/{session_id}/consent", response_model=s.ConsentsRead)
async def give_consent(
    session_id: int, body: s.ConsentBody, session: Session, who: AttendeeDep
) -> s.ConsentsRead:
    """A participant consents to recording, or withdraws; audited."""
    return await recording.give_consent(
        session, who, session_id=session_id, recording=body.recording
    )


@router.get("/{session_id}/consent", response_model=s.ConsentsRead)
async def read_consents(session_id: int, session: Session, who: AttendeeDep) -> s.ConsentsRead:
    """Who consented to recording, and whether recording is allowed."""
    return await recording.read_consents(session, who, session_id=session_id)


def _recording_read(row: Recording) -> s.RecordingRead:
    return s.RecordingRead(
        id=row.id,
        teleconsult_id=row.teleconsult_id,
        media_type=row.media_type,
        size=row.size,
        sha256=row.sha256,
        started_at=row.started_at,
        ended_at=row.ended_at,
        created_at=row.created_at,
    )


@router.get("/{session_id}/recordings", response_model=list[s.RecordingRead])
async def list_recordings(
    session_id: int, session: Session, caller: CurrentUser
) -> list[s.RecordingRead]:
    """The session's recordings (users of the referral's two institutions; audited)."""
    rows = await recording.list_recordings(session, caller, session_id=session_id)
    return [_recording_read(r) for r in rows]


@router.get("/{session_id}/recordings/{recording_id}", response_class=FileResponse)
async def download_recording(
    session_id: int,
    recording_id: int,
    session: Session,
    caller: CurrentUser,
    platform: PlatformDep,
) -> FileResponse:
    """Download a recording (users of the referral's two institutions; each access audited)."""
    row, path = await recording.open_recording(
        session,
        caller,
        settings=platform.settings,
        session_id=session_id,
        recording_id=recording_id,
    )
    return FileResponse(
        path,
        media_type=row.media_type,
        filename=f"teleconsult-{session_id}-recording-{row.id}",
        headers={"Cache-Control": "no-store"},
    )
