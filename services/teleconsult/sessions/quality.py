"""Connection quality: clients post `getStats()` summaries; the session report sums them up.

A participant may post one sample per `SAMPLE_INTERVAL` (more are refused with
429: a client posts every few seconds, a flood is a bug or an attack), only while
it is in the session (joined, not ended), and its clock may not run ahead of ours
by more than `CLOCK_SKEW`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.teleconsult.sessions import repository as repo
from services.teleconsult.sessions import rules
from services.teleconsult.sessions import schemas as s
from services.teleconsult.sessions.access import (
    Attendee,
    attendee_participant,
    attendee_session,
    conflict,
    visible_session,
    words,
)
from services.teleconsult.sessions.models import (
    Participant,
    QualitySample,
    SessionStatus,
)
from shared.db import utcnow
from shared.identity.deps import Caller
from shared.problems import JisrError, Unprocessable

SAMPLE_INTERVAL = timedelta(seconds=1)
CLOCK_SKEW = timedelta(seconds=60)
METRICS = (
    "rtt_ms",
    "packet_loss_pct",
    "audio_in_kbps",
    "audio_out_kbps",
    "video_in_kbps",
    "video_out_kbps",
)


class TooManyRequests(JisrError):
    status, slug = 429, "too_many_requests"


async def post_sample(
    session: AsyncSession,
    who: Attendee,
    *,
    session_id: int,
    body: s.StatsSample,
    now: datetime | None = None,
) -> QualitySample:
    action = "teleconsult.stats"
    now = now or utcnow()
    row = await attendee_session(session, who, session_id, action=action)
    participant = await attendee_participant(session, who, row, action=action)
    if row.status != SessionStatus.IN_PROGRESS.value or participant.first_joined_at is None:
        raise conflict(
            who.actor,
            action,
            "not_in_session",
            "quality samples are taken from participants in a session in progress",
            row.id,
            lang=who.lang,
        )
    if body.measured_at > now + CLOCK_SKEW:
        raise Unprocessable(words("clock_ahead", who.lang), rule="clock_ahead")
    # Lock the participant so that two samples racing each other see one another.
    await session.refresh(participant, with_for_update=True)
    last = await repo.last_sample_at(session, participant.id)
    if last is not None and now - last < SAMPLE_INTERVAL:
        raise TooManyRequests(words("sample_rate", who.lang), rule="sample_rate", retry_after_s=1)
    sample = QualitySample(
        teleconsult_id=row.id,
        participant_id=participant.id,
        measured_at=body.measured_at,
        received_at=now,
        **{m: getattr(body, m) for m in METRICS},
    )
    session.add(sample)
    await session.flush()
    return sample


def summarise(samples: list[QualitySample]) -> s.QualityRead:
    """Median and 95th percentile of each metric over one participant's samples (pure)."""

    def spread(metric: str) -> s.Spread:
        found = rules.Spread.of([getattr(x, metric) for x in samples])
        return s.Spread(median=found.median, p95=found.p95)

    return s.QualityRead(samples=len(samples), **{m: spread(m) for m in METRICS})


def _report_participant(
    p: Participant, samples: list[QualitySample], consent: bool | None
) -> s.ReportParticipant:
    return s.ReportParticipant(
        id=p.id,
        peer=p.peer,
        kind=p.kind,
        display_name=p.display_name,
        institution_id=p.institution_id,
        first_joined_at=p.first_joined_at,
        last_joined_at=p.last_joined_at,
        left_at=p.left_at,
        joins=p.joins,
        recording_consent=consent,
        quality=summarise(samples),
    )


async def report(session: AsyncSession, caller: Caller, *, session_id: int) -> s.ReportRead:
    """The session report: who joined when, duration, outcome, and each one's quality."""
    row = await visible_session(session, caller, session_id, action="teleconsult.report")
    by_participant: dict[int, list[QualitySample]] = defaultdict(list)
    for sample in await repo.samples(session, row.id):
        by_participant[sample.participant_id].append(sample)
    answers = await repo.consents(session, row.id)
    return s.ReportRead(
        id=row.id,
        referral_id=row.referral_id,
        status=row.status,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        duration_s=row.duration_s,
        outcome=row.outcome,
        outcome_note=row.outcome_note,
        low_bandwidth=row.low_bandwidth,
        participants=[
            _report_participant(
                p,
                by_participant.get(p.id, []),
                answers[p.id].granted if p.id in answers else None,
            )
            for p in await repo.participants(session, row.id)
        ],
    )
