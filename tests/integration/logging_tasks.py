"""A task that logs one line, for the in-process worker and a worker started with `--include`."""

from __future__ import annotations

import logging

from shared.tasks import celery_app

LOGGING_TASK = "tests.logs.log_a_line_task"
log = logging.getLogger("jisr.tests.logging_task")


@celery_app.task(name=LOGGING_TASK)
def log_a_line_task(label: str) -> str:
    """Logs `task <label> runs` at WARNING, so any log level shows it."""
    log.warning("task %s runs", label)
    return label
