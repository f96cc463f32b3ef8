"""A study's de-identification for a share, on every core: read, de-identify, write, gate.

Blocking: callers run it in a thread. Every instance is read once here, up to
its pixel data (`deid.bulk.split`; a file it cannot split is read whole), for
the study's identifiers (`deid.identifiers_of` each instance, merged with `|`);
then each goes through `deid.deidentify` with them, is written as a Part 10
file, and the file as written is read back and passed through the gate (what
leaves is the file, not the dataset). The pixel data element is never parsed:
it follows the written header byte for byte (`deid.bulk.join`), and the gate
does not read pixels. Any refusal blocks the whole study.

The work is pure Python, so threads would share one core: on a machine with
cores to spare (`PROCESSES`), a study of at least `PARALLEL_FROM` instances is
spread over a pool of worker processes
(forkserver, started on first use and kept for the life of the process, so a
share pays no start-up but the first). Workers get each file's header only and
send back the written header; the pixel data stays here. A pool that breaks is
dropped and the study done here instead, as it is in a daemonic process (which
may not have children). Workers leave by themselves when the process that made
the pool is gone. Workers start as `multiprocessing` starts them under
forkserver: they import the parent's `__main__` module once, which must guard
its entry point (`jisr`'s does).
"""

from __future__ import annotations

import functools
import io
import multiprocessing
import operator
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

import pydicom
from pydicom.dataset import Dataset

from services.imaging import deid
from services.imaging.deid import bulk

__all__ = ["PARALLEL_FROM", "PROCESSES", "StudyBlocked", "deidentify_study", "warm"]

_CORES = os.cpu_count() or 1
PROCESSES = min(_CORES // 2, 4) if _CORES >= 4 else min(_CORES, 2)
"""Worker processes of a share: half the cores from four up (the server and its Orthanc need
the rest), at most four; both cores of a two-core machine, where `bench/deid.py` measured the
pool of two at 198 instances/s against 139 in one process (quiet machine, 2026-11-23), now
that only headers cross to the workers and back (when whole files did, it was slower)."""
PARALLEL_FROM = 16
"""Smaller studies are done in the calling process: the pool's round trips would cost more."""
PREFIX_BYTES = 64 * 1024
"""What a worker gets of each file to find its identifiers: headers are a few kB, and a
longer one (large private blocks, enhanced multi-frame) is read whole here instead."""
_WATCH_S = 1.0
T = TypeVar("T")


class StudyBlocked(Exception):
    """The study may not leave: `rule` is the share's blocked reason, `reason` says why."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Blocked:
    """A refusal as a worker sends it back (`deid` errors do not all survive pickling)."""

    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Terms:
    """What every instance of the study is de-identified and gated with (it travels to workers)."""

    identifiers: deid.Identifiers
    key: bytes
    pseudonym: str
    options: deid.Options


def _read(data: bytes) -> tuple[Dataset, int | None]:
    """The instance up to its pixel data and where that starts, or read whole (offset None)."""
    parts = bulk.split(data)
    if parts is None:
        return pydicom.dcmread(io.BytesIO(data)), None
    return parts


def _one(ds: Dataset, own: deid.Identifiers, terms: _Terms) -> bytes | _Blocked:
    """`ds` de-identified, written and gated as written (its header only, if that is all `ds` is)."""
    identifiers = terms.identifiers
    try:
        out = deid.deidentify(
            ds,
            key=terms.key,
            pseudonym=terms.pseudonym,
            options=terms.options,
            identifiers=identifiers,
            own=own,
        )
        buffer = io.BytesIO()
        out.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        # What leaves is the file, not the dataset: scan it as the partner will read it.
        deid.check(pydicom.dcmread(io.BytesIO(data)), identifiers)
    except deid.BurnedInAnnotationRefused as exc:
        return _Blocked("burned_in", exc.reason)
    except deid.LeakDetected as exc:
        return _Blocked("leak_detected", str(exc))
    except deid.DeidError as exc:
        return _Blocked("deid_failed", str(exc))
    return data


def _chunk(
    payloads: Sequence[bytes], owns: Sequence[deid.Identifiers], terms: _Terms
) -> list[bytes | _Blocked]:
    """A worker's share of the study: headers (or whole files), read again here, since
    datasets do not travel; what comes back is as small as what went."""
    return [
        _one(pydicom.dcmread(io.BytesIO(payload)), own, terms)
        for payload, own in zip(payloads, owns, strict=True)
    ]


def _firsts(prefixes: Sequence[bytes]) -> list[tuple[deid.Identifiers, int, str] | None]:
    """A worker's first pass: each file's own identifiers and where its pixel data starts,
    read from the file's first bytes; None where those do not hold the whole header."""
    found: list[tuple[deid.Identifiers, int, str] | None] = []
    for prefix in prefixes:
        head = bulk.header(prefix)
        found.append(None if head is None else (deid.identifiers_of(head[0]), head[1], head[2]))
    return found


_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _watch(owner: int) -> None:
    """In each worker: leave when the process that made the pool is gone. A server killed
    by a signal never shuts its pool down, and idle workers would wait for work forever."""

    def watch() -> None:
        while True:
            time.sleep(_WATCH_S)
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # alive, under another user: not ours to judge
                continue

    threading.Thread(target=watch, name="jisr-pool-watch", daemon=True).start()


def _executor(processes: int) -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            _pool = ProcessPoolExecutor(
                max_workers=processes,
                mp_context=context,
                initializer=_watch,
                initargs=(os.getpid(),),
            )
        return _pool


def warm(processes: int = PROCESSES) -> None:
    """Start the pool and its workers now, so that the first share after a start does not
    wait for them: the forkserver imports the server's modules once, about 2 s when the
    first share paid for it (bench/dicomweb.py). Blocking: the service runs it in a thread."""
    if processes < 2 or multiprocessing.current_process().daemon:
        return
    try:
        pool = _executor(processes)
        for future in [pool.submit(os.getpid) for _ in range(processes)]:
            future.result()
    except (BrokenProcessPool, OSError):
        _drop_pool()


def _drop_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def deidentify_study(
    files: Sequence[bytes],
    *,
    key: bytes,
    pseudonym: str,
    options: deid.Options,
    processes: int = PROCESSES,
) -> list[bytes]:
    """Every instance of a study de-identified and gated, in order, or `StudyBlocked`."""
    if not files:
        return []
    results: list[bytes | _Blocked] | None = None
    # A daemonic process (a worker of some pool) may not start processes of its own.
    can_spread = not multiprocessing.current_process().daemon
    if can_spread and processes > 1 and len(files) >= PARALLEL_FROM:
        results = _over_pool(files, key, pseudonym, options, processes)
    if results is None:
        results = _here(files, key, pseudonym, options)
    outgoing: list[bytes] = []
    for result in results:
        if isinstance(result, _Blocked):
            raise StudyBlocked(result.rule, result.reason)
        outgoing.append(result)
    return outgoing


def _terms(
    owns: Sequence[deid.Identifiers], key: bytes, pseudonym: str, options: deid.Options
) -> _Terms:
    identifiers = functools.reduce(operator.or_, owns)  # the study's, merged
    return _Terms(identifiers=identifiers, key=key, pseudonym=pseudonym, options=options)


def _carried(result: bytes | _Blocked, data: bytes, offset: int | None) -> bytes | _Blocked:
    """The written header followed by the original's pixel data, when it was split off."""
    if isinstance(result, _Blocked) or offset is None:
        return result
    return bulk.join(result, data, offset)


def _here(
    files: Sequence[bytes], key: bytes, pseudonym: str, options: deid.Options
) -> list[bytes | _Blocked]:
    """The study in this process: each header read once, for both passes."""
    reads = [_read(data) for data in files]
    owns = [deid.identifiers_of(ds) for ds, _ in reads]
    terms = _terms(owns, key, pseudonym, options)
    return [
        _carried(_one(ds, own, terms), data, offset)
        for data, (ds, offset), own in zip(files, reads, owns, strict=True)
    ]


def _over_pool(
    files: Sequence[bytes], key: bytes, pseudonym: str, options: deid.Options, processes: int
) -> list[bytes | _Blocked] | None:
    """The study over the pool, in two passes (the study's identifiers must be merged
    before any instance is cleaned): the workers read each file's first bytes for its
    identifiers, then de-identify its header; only headers travel, the pixel data stays
    here. A file whose header is longer than `PREFIX_BYTES`, or that cannot be split, goes
    whole. None if the pool broke."""
    firsts = _spread(_firsts, [[data[:PREFIX_BYTES] for data in files]], (), processes)
    if firsts is None:
        return None
    owns: list[deid.Identifiers] = []
    offsets: list[int | None] = []
    for data, first in zip(files, firsts, strict=True):
        if first is not None and bulk.carries(data, first[1], first[2]):
            owns.append(first[0])
            offsets.append(first[1])
        else:
            owns.append(deid.identifiers_of(pydicom.dcmread(io.BytesIO(data))))
            offsets.append(None)
    terms = _terms(owns, key, pseudonym, options)
    payloads = [
        data if offset is None else data[:offset]
        for data, offset in zip(files, offsets, strict=True)
    ]
    results = _spread(_chunk, [payloads, owns], (terms,), processes)
    if results is None:
        return None
    return [
        _carried(result, data, offset)
        for result, data, offset in zip(results, files, offsets, strict=True)
    ]


def _spread(
    work: Callable[..., list[T]],
    columns: Sequence[Sequence[Any]],
    shared: tuple[Any, ...],
    processes: int,
) -> list[T] | None:
    """`work` over the pool in chunks of `columns` (each chunk with `shared`), results in
    order; None if the pool broke."""
    count = len(columns[0])
    size = max(4, -(-count // (processes * 4)))  # a few chunks per worker, for balance
    try:
        pool = _executor(processes)
        futures = [
            pool.submit(work, *(column[i : i + size] for column in columns), *shared)
            for i in range(0, count, size)
        ]
        return [result for future in futures for result in future.result()]
    except (BrokenProcessPool, OSError):  # a worker died, or none could be started
        _drop_pool()
        return None
