"""Celery workers as their own processes, on a broker of the test's own, that a test may kill."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.celery_worker import worker_command
from tests.failure.parts import stop_process, wait_until

QUEUE = "jisr"


@dataclass
class Worker:
    """`celery -A shared.tasks worker` with the platform's settings in `env`."""

    env: dict[str, str]
    log: Path
    pool: str = "prefork"
    name: str = "failure"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 (celery of our own venv)
                worker_command(
                    self.name,
                    pool=self.pool,
                    options=["--concurrency=1", "--without-heartbeat", "--loglevel=INFO"],
                ),
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pool_processes(self) -> list[int]:
        """The pool's child processes (prefork), from /proc."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def kill_pool_process(self) -> int:
        """SIGKILL the one process of the pool, the one running the task."""
        wait_until(lambda: len(self.pool_processes()) == 1, "one pool process")
        (child,) = self.pool_processes()
        os.kill(child, signal.SIGKILL)
        return child

    def kill(self) -> None:
        """SIGKILL the whole worker, as a machine that loses power."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        stop_process(self.process)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def unacked_ages(broker_url: str) -> list[float]:
    """Seconds since each message still unacknowledged on the Redis broker was delivered."""
    client = redis.Redis.from_url(broker_url)
    try:
        now = time.time()
        entries: list[tuple[bytes, float]] = client.zrange(  # type: ignore[assignment]
            "unacked_index", 0, -1, withscores=True
        )
        return [now - float(score) for _, score in entries]
    finally:
        client.close()
