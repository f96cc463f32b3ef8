"""`teleconsult.record_session_task`: start the recorder process of a session.

Sent (after the commit) once every participant who joined has consented. The
task only spawns `jisr teleconsult-recorder --session N` and returns: the media
never runs in a Celery worker thread, and never in the embedded worker that
lives inside the web process. Running it twice is safe: a live recorder of the
session (its pid file) makes the second spawn a no-op, and the recorder itself
asks `recorder_grant` again, which refuses without consent.
"""

from __future__ import annotations

from services.teleconsult import recorder
from shared.tasks import celery_app, task_platform

TASK = "teleconsult.record_session_task"
QUEUE = "teleconsult-recorder"


@celery_app.task(name=TASK, queue=QUEUE)
def record_session_task(session_id: int) -> int:
    """Spawn (or find) the recorder process of `session_id`; its pid."""
    return recorder.spawn(task_platform().settings, session_id)
