"""A real Celery worker process on the real Redis broker, against a test's database."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from celery import Celery

from shared.platform import Platform
from tests.conftest import REDIS_URL, need


def worker_command(
    name: str, *, pool: str = "solo", include: str | None = None, options: Sequence[str] = ()
) -> list[str]:
    """`celery worker` of this venv on the `jisr` queue, alone (no gossip, no mingle: quick to
    start), as `name-<random>@localhost`; `include` adds a module of test tasks."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "shared.tasks",
        "worker",
        f"--pool={pool}",
        "--queues=jisr",
        "--without-gossip",
        "--without-mingle",
        f"--hostname={name}-{uuid.uuid4().hex[:8]}@localhost",
    ]
    if include is not None:
        command.append(f"--include={include}")
    return [*command, *options]


@asynccontextmanager
async def redis_worker(
    platform: Platform, signing_key: Path, data_dir: Path
) -> AsyncIterator[Celery]:
    """Start `celery worker` (solo pool) on Redis; yield a client app that sends it tasks by name."""
    need("Redis", "127.0.0.1", 6379)
    env = {
        **os.environ,
        "JISR_DATABASE_URL": platform.settings.resolved_database_url,
        "JISR_BROKER_URL": REDIS_URL,
        "JISR_RESULT_BACKEND": REDIS_URL,
        "JISR_SIGNING_KEY_PATH": str(signing_key),
        "JISR_DATA_DIR": str(data_dir),
    }
    worker = await asyncio.create_subprocess_exec(
        *worker_command("test", options=["--concurrency=1", "--loglevel=WARNING"]),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    client = Celery("client", broker=REDIS_URL, backend=REDIS_URL)
    failed: BaseException | None = None
    try:
        yield client
    except BaseException as exc:
        failed = exc
        raise
    finally:
        worker.terminate()
        _, stderr = await asyncio.wait_for(worker.communicate(), timeout=30)
        client.close()
        if failed is not None:
            print(stderr.decode(errors="replace")[-2000:], file=sys.stderr)


async def run_task(client: Celery, name: str, *args: Any) -> Any:
    result = client.send_task(name, args=list(args), queue="jisr")
    return await asyncio.to_thread(result.get, timeout=60)
