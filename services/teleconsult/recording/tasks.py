"""`teleconsult.record_session_task`: start the recorder process of a session.

Sent after the commit of a consent or a join once every participant who joined
has consented (`sessions.recording.RECORD_TASK`). The task checks that again,
spawns `jisr teleconsult-recorder --session N` and returns: the media never runs
in a Celery worker, so the default queue is right and any worker, the embedded
one inside the web process included, may take it. Running it twice is safe: a
live recorder of the session (its pid file, under a lock) makes the second spawn
a no-op, and the recorder itself asks `recorder_grant` again, which refuses
without consent.
"""

from __future__ import annotations

from services.teleconsult import recorder
from services.teleconsult.sessions.recording import RECORD_TASK, recording_allowed
from shared.platform import Platform
from shared.tasks import celery_app, run_async, task_platform

TASK = RECORD_TASK


async def _allowed(platform: Platform, session_id: int) -> bool:
    async with platform.database.transaction() as session:
        return await recording_allowed(session, session_id)


@celery_app.task(name=TASK)
def record_session_task(session_id: int) -> int | None:
    """Spawn (or find) the recorder process of `session_id`; its pid, or None when
    recording is not (or no longer) allowed, so no process is started."""
    if not run_async(lambda platform: _allowed(platform, session_id)):
        return None
    return recorder.spawn(task_platform().settings, session_id)
