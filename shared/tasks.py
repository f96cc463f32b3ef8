"""The one Celery app, and how tasks run the platform's async code.

Tasks are thin sync functions named `*_task` that take ids, re-load their rows
and can run twice safely. `run_async()` runs their async body on an event loop
owned by the worker thread, with that loop's own database engine.

Embedded default: the broker is kombu's in-memory transport, and
`EmbeddedWorker` runs a real Celery worker (solo pool) and beat in threads of
the web process, so the same task code and schedule run with nothing to
install. Production points `JISR_BROKER_URL` at Redis and runs `celery worker`
and `celery beat` as their own processes.

Tasks are sent only after the transaction that asked for them commits
(`send_after_commit`), and carry the request id in their headers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from celery import Celery, signals
from celery._state import _set_task_join_will_block  # type: ignore[attr-defined]
from celery.beat import EmbeddedService
from celery.worker import WorkController
from celery.worker import state as worker_state
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session as SyncSession

from shared import logs
from shared import metrics as _metrics  # noqa: F401 - counts task failures where workers run
from shared.logs import request_id_var
from shared.platform import Platform
from shared.settings import Settings, get_settings

T = TypeVar("T")
log = logging.getLogger("jisr.tasks")

# Each domain's tasks module, by name: shared never imports a service.
TASK_MODULES = [
    "shared.registry.tasks",
    "shared.notifications.tasks",
    "services.referral.referrals.tasks",
    "services.imaging.forwarding.tasks",
    "services.imaging.pickup.tasks",
    "services.teleconsult.recording.tasks",
]

celery_app = Celery("jisr", include=TASK_MODULES)


def configure(settings: Settings) -> Celery:
    """Apply settings: late acks with rejection on worker loss, prefetch one, long visibility."""
    transport = {"visibility_timeout": settings.task_visibility_timeout_s}
    celery_app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="jisr",
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=timedelta(days=1),
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        beat_schedule={
            "expire-lapsed-agreements": {
                "task": "registry.expire_agreements_task",
                "schedule": timedelta(seconds=settings.expiry_check_interval_s),
            },
            "escalate-overdue-referrals": {
                "task": "referrals.escalate_overdue_task",
                "schedule": timedelta(seconds=settings.escalation_interval_s),
            },
            "pick-up-c-stored-studies": {
                "task": "imaging.poll_stores_task",
                "schedule": timedelta(seconds=30),
            },
        },
    )
    return celery_app


configure(get_settings())

# The platform tasks use: set by the embedded app, else built from the environment.
_platform: Platform | None = None
_local = threading.local()


def use_platform(platform: Platform) -> None:
    global _platform
    _platform = platform
    configure(platform.settings)


def task_platform() -> Platform:
    global _platform
    if _platform is None:
        _platform = Platform.from_settings(get_settings())
    return _platform


_worker_loops: list[asyncio.AbstractEventLoop] = []


def run_async(body: Callable[[Platform], Awaitable[T]]) -> T:
    """Run a task's async body on this thread's own, long-lived event loop."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
        _worker_loops.append(loop)
    return loop.run_until_complete(body(task_platform()))


def close_worker_loops() -> None:
    """Close the task loops of stopped worker threads and their database connections."""

    def close() -> None:
        while _worker_loops:
            loop = _worker_loops.pop()
            if not loop.is_closed():
                loop.run_until_complete(task_platform().database.dispose())
                loop.close()

    # A thread of its own: the caller may itself be running an event loop.
    closer = threading.Thread(target=close, name="close-task-loops")
    closer.start()
    closer.join()


# Send after commit ---------------------------------------------------------------------

_OUTBOX = "jisr_outbox"


def send_after_commit(session: AsyncSession, task_name: str, *args: Any, **kwargs: Any) -> None:
    """Queue a task to be sent once `session` commits; a rollback drops it."""
    session.sync_session.info.setdefault(_OUTBOX, []).append((task_name, args, kwargs))


@event.listens_for(SyncSession, "after_commit")
def _send_outbox(session: SyncSession) -> None:
    for name, args, kwargs in session.info.pop(_OUTBOX, []):
        celery_app.send_task(name, args=args, kwargs=kwargs)


@event.listens_for(SyncSession, "after_rollback")
def _drop_outbox(session: SyncSession) -> None:
    session.info.pop(_OUTBOX, None)


@signals.before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and request_id_var.get():
        headers["request_id"] = request_id_var.get()


@signals.setup_logging.connect
def _json_logs(**_: Any) -> None:
    """`celery worker` and `celery beat` log as the services do: JSON lines with the request id."""
    settings = get_settings()
    logs.configure(settings.log_level, json_lines=settings.log_json)


_RESET_RID = "jisr_request_id_reset"


@signals.task_prerun.connect
def _adopt_request_id(task: Any = None, **_: Any) -> None:
    """The task's lines carry the id its request sent, until `_drop_request_id`."""
    if task is None:
        return
    token = request_id_var.set(getattr(task.request, "request_id", None))
    setattr(task.request, _RESET_RID, token)


@signals.task_postrun.connect
def _drop_request_id(task: Any = None, **_: Any) -> None:
    """Give back the id the worker had before the task (None in a worker; the caller's when a
    task runs in its caller), so the next task's "received" line does not carry this one's."""
    token = getattr(task.request, _RESET_RID, None) if task is not None else None
    if token is None:
        return
    delattr(task.request, _RESET_RID)
    try:
        request_id_var.reset(token)
    except ValueError:  # set in another context (a pool that switched threads): clear it
        request_id_var.set(None)


# The embedded worker -------------------------------------------------------------------


class EmbeddedWorker:
    """A real Celery worker (solo pool) and beat, in threads of this process."""

    def __init__(self, *, beat: bool = True) -> None:
        self._beat: Any = EmbeddedService(celery_app, thread=True) if beat else None
        self._worker: WorkController | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the worker and beat; return once the worker consumes."""
        worker_state.should_terminate = None
        ready = threading.Event()

        class Controller(celery_app.WorkController):  # type: ignore[name-defined,misc]
            def on_consumer_ready(self, consumer: Any) -> None:
                super().on_consumer_ready(consumer)
                ready.set()

        self._worker = Controller(
            pool="solo",
            concurrency=1,
            hostname="embedded@jisr",
            loglevel="WARNING",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self._thread = threading.Thread(
            target=self._worker.start, name="celery-worker", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the embedded Celery worker did not start")
        # The solo pool marks this process as "inside a task"; the web side is not.
        _set_task_join_will_block(False)
        if self._beat is not None:
            self._beat.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._beat is not None:
            self._beat.stop()
        worker_state.should_terminate = 0  # type: ignore[assignment]
        if self._thread is not None:
            self._thread.join(timeout)
        worker_state.should_terminate = None
        close_worker_loops()
