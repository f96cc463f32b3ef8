"""A task's request id ends with the task: the next task, and the worker between tasks, are clean.

The id a web request gave its task rides in the task's headers and is set for
the task's log lines; once the task ends, the worker's own lines (the next
task's "received", the next task's lines) must not carry it, or two requests'
logs get mixed up. Tested on the in-process worker and on a `celery worker`
process on Redis (database `JISR_TEST_REDIS`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from jisr.topology.processes import Process
from shared import tasks
from shared.logs import JsonFormatter, request_id_var
from shared.platform import Platform
from shared.settings import Settings
from tests.celery_worker import worker_command
from tests.conftest import REDIS_URL, need
from tests.integration.logging_tasks import LOGGING_TASK

FIRST_ID = "req-first-0001"
DEADLINE_S = 30.0


class Lines(logging.Handler):
    """Every record as the services write it (a JSON line), formatted where it is logged."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def captured() -> Iterator[Lines]:
    handler = Lines()
    loggers = [logging.getLogger(name) for name in ("celery", "jisr.tests")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield handler
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


async def until(found: Callable[[], list[dict[str, Any]]], what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + DEADLINE_S
    while not (lines := found()):
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_S} s"
        await asyncio.sleep(0.05)
    return lines


def about(lines: list[dict[str, Any]], *words: str) -> list[dict[str, Any]]:
    return [line for line in lines if any(word in line["message"] for word in words)]


async def test_the_in_process_worker_does_not_carry_one_tasks_request_id_into_the_next(
    platform: Platform, captured: Lines
) -> None:
    tasks.use_platform(platform)
    worker = tasks.EmbeddedWorker(beat=False)
    worker.start()
    try:
        token = request_id_var.set(FIRST_ID)
        try:
            tasks.celery_app.send_task(LOGGING_TASK, args=["first"])
        finally:
            request_id_var.reset(token)
        await until(lambda: about(captured.lines, "task first runs"), "first task's line")
        second = tasks.celery_app.send_task(LOGGING_TASK, args=["second"])
        await until(lambda: about(captured.lines, f"[{second.id}] succeeded"), "second task's end")
    finally:
        worker.stop()
        tasks.configure(Settings())

    (first_line,) = about(captured.lines, "task first runs")
    seconds = about(captured.lines, second.id, "task second runs")
    assert first_line["request_id"] == FIRST_ID
    assert len(seconds) >= 3  # received, its own line, succeeded
    assert [line["request_id"] for line in seconds] == [None] * len(seconds)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The tests' Redis database (`JISR_TEST_REDIS`), emptied before and after."""
    need("Redis", "127.0.0.1", 6379)
    redis.Redis.from_url(REDIS_URL).flushdb()
    yield REDIS_URL
    redis.Redis.from_url(REDIS_URL).flushdb()


def worker_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for text in log.read_text(errors="replace").splitlines():
        if text.startswith("{") and text.endswith("}"):
            lines.append(json.loads(text))
    return lines


async def test_a_worker_process_does_not_carry_one_tasks_request_id_into_the_next(
    redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    worker = Process(
        "worker",
        worker_command("request-id", include="tests.integration.logging_tasks"),
        {
            **os.environ,
            "JISR_BROKER_URL": redis_url,
            "JISR_DATA_DIR": str(tmp_path),
            "JISR_LOG_LEVEL": "INFO",
            "JISR_LOG_JSON": "true",
        },
        log,
    )
    sender = Celery("client", broker=redis_url)
    worker.start()
    try:
        first = sender.send_task(
            LOGGING_TASK, args=["first"], queue="jisr", headers={"request_id": FIRST_ID}
        )

        def ended(task_id: str) -> Callable[[], list[dict[str, Any]]]:
            def found() -> list[dict[str, Any]]:
                worker.check()
                return about(worker_lines(log), f"[{task_id}] succeeded")

            return found

        await until(ended(first.id), "first task's end")
        second = sender.send_task(LOGGING_TASK, args=["second"], queue="jisr")
        await until(ended(second.id), "second task's end")
    finally:
        sender.close()
        worker.stop()

    lines = worker_lines(log)
    (first_line,) = about(lines, "task first runs")
    seconds = about(lines, second.id, "task second runs")
    assert first_line["request_id"] == FIRST_ID
    assert len(seconds) >= 3  # received, its own line, succeeded
    assert [line["request_id"] for line in seconds] == [None] * len(seconds)
