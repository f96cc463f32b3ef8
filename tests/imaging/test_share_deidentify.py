"""A share's de-identification spread over worker processes answers as the one-process path."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import multiprocessing.queues
import threading

import pydicom
import pytest
from pydicom.uid import generate_uid

from services.imaging import app as imaging_app
from services.imaging import deid
from services.imaging.shares import deidentify as spread
from services.imaging.shares.deidentify import PARALLEL_FROM, StudyBlocked, deidentify_study
from shared.platform import Platform
from shared.web import make_app
from tests.imaging.factories import instance
from tests.imaging.test_shares import original_identifiers

KEY = b"test-agreement-key-0123456789abcd"
ALIAS = "JISR-TEST-01"
SAFE = frozenset({("JISR_TEST", 0x00090010)})  # (0009,xx10) under its creator


def series(count: int) -> list[bytes]:
    study, uid = generate_uid(), generate_uid()
    return [
        instance(study_uid=study, series_uid=uid, instance_number=n, patient_name="Benali^Ahmed")
        for n in range(1, count + 1)
    ]


def with_name_in_a_safe_private_tag(data: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.private_block(0x0009, "JISR_TEST", create=True).add_new(0x10, "OB", b"Benali^Ahmed")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_study_spread_over_two_processes_comes_out_as_in_one() -> None:
    files = series(PARALLEL_FROM + 3)
    options = deid.Options()

    one = deidentify_study(files, key=KEY, pseudonym=ALIAS, options=options, processes=1)
    two = deidentify_study(files, key=KEY, pseudonym=ALIAS, options=options, processes=2)

    assert two == one  # byte for byte, in order
    assert spread._pool is not None  # the pool did the work: it did not break on the way
    identifiers = original_identifiers(files)
    for data in two:
        deid.check(pydicom.dcmread(io.BytesIO(data)), identifiers)


@pytest.mark.parametrize("processes", [1, 2])
def test_one_leaking_instance_blocks_the_whole_study(processes: int) -> None:
    files = series(PARALLEL_FROM + 1)
    files[-2] = with_name_in_a_safe_private_tag(files[-2])
    options = deid.Options(safe_private_tags=SAFE)  # wrongly called safe: kept as it is

    with pytest.raises(StudyBlocked) as blocked:
        deidentify_study(files, key=KEY, pseudonym=ALIAS, options=options, processes=processes)

    assert blocked.value.rule == "leak_detected"
    assert "Benali" not in blocked.value.reason


def _in_a_daemon(files: list[bytes], answers: multiprocessing.queues.Queue[int]) -> None:
    out = deidentify_study(files, key=KEY, pseudonym=ALIAS, options=deid.Options(), processes=2)
    answers.put(len(out))


def test_a_daemonic_process_which_may_not_start_workers_does_the_study_itself() -> None:
    files = series(PARALLEL_FROM)
    context = multiprocessing.get_context("fork")
    answers: multiprocessing.queues.Queue[int] = context.Queue()
    daemon = context.Process(target=_in_a_daemon, args=(files, answers), daemon=True)
    daemon.start()
    try:
        assert answers.get(timeout=60) == len(files)
    finally:
        daemon.join(timeout=60)
    assert daemon.exitcode == 0


def test_warming_starts_the_pool_and_its_workers_before_any_share() -> None:
    spread._drop_pool()

    spread.warm(2)

    assert spread._pool is not None
    assert len(spread._pool._processes) == 2  # both workers are up, not started on demand
    files = series(PARALLEL_FROM)
    assert len(deidentify_study(files, key=KEY, pseudonym=ALIAS, options=deid.Options())) == len(
        files
    )


def test_one_process_warms_nothing() -> None:
    spread._drop_pool()

    spread.warm(1)

    assert spread._pool is None


async def test_the_imaging_service_warms_up_in_a_thread_once_it_starts(
    platform: Platform,
) -> None:
    ran: list[str] = []
    started = threading.Event()

    def work() -> None:
        ran.append(threading.current_thread().name)
        started.set()

    app = make_app("warm-up test", [], platform=platform, warm_up=[work])
    assert not ran  # nothing before the server starts
    async with app.router.lifespan_context(app):
        assert await asyncio.to_thread(started.wait, 30)

    assert ran == ["jisr-warm-work"]
    assert spread.warm in imaging_app.WARM_UP
