"""A task that always fails, for a worker process started with `--include` of this module."""

from __future__ import annotations

from shared.tasks import celery_app

FAILING_TASK = "tests.metrics.always_fails_task"


@celery_app.task(name=FAILING_TASK)
def always_fails_task() -> None:
    """Fails, so that the failure is counted."""
    raise RuntimeError("fails on purpose")
