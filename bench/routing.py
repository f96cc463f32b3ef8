"""Routing latency: 1,000 agreements, 10,000 coverage lines, target p99 under 5 ms per referral.

    .venv/bin/python -m bench.routing

Times, per referral, the platform's in-memory routing path (`jisr`: an index of
agreements by institution built once, then `decide()` for each providing party
and `routing.rank()`), the reference peer on the same data in the same run (a
naive scan of all agreements and the whole ledger, per referral and per
provider), and the database paths on a fresh SQLite file and, when it answers,
a temporary database on the PostgreSQL at 127.0.0.1:5432 (see `bench.database`).
Prints a Markdown table; `bench/README.md` keeps the results.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import platform
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench import database, synthetic
from bench.paths import Context, Indexed, naive
from bench.synthetic import Ask
from services.referral import routing
from shared import migrations

TARGET_MS = 5.0
PG_ADMIN = os.environ.get("JISR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(slots=True)
class Row:
    path: str
    samples_ns: list[int]
    same: str = "-"
    queries: str = "-"
    cpu_ns: list[int] = field(default_factory=list)
    """Process CPU time per referral: the wall time without the waits for other processes."""

    def cells(self) -> list[str]:
        ms = sorted(s / 1e6 for s in self.samples_ns)
        p99 = _percentile(ms, 99)
        return [
            self.path,
            str(len(ms)),
            f"{statistics.fmean(ms):.3f}",
            f"{_percentile(ms, 50):.3f}",
            f"{_percentile(ms, 95):.3f}",
            f"{p99:.3f}",
            "yes" if p99 < TARGET_MS else "**no**",
            f"{_percentile(sorted(self.cpu_ns), 99) / 1e6:.3f}" if self.cpu_ns else "-",
            self.queries,
            self.same,
        ]


HEADER = [
    "path",
    "referrals",
    "mean ms",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    f"p99 < {TARGET_MS:g} ms",
    "p99 CPU ms",
    "queries / referral",
    "same ranking as jisr",
]


def _percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(slots=True)
class InMemory:
    path: str
    route: Callable[[Ask], list[routing.Ranked]]
    limit: int
    wall_ns: list[int] = field(default_factory=list)
    cpu_ns: list[int] = field(default_factory=list)
    rankings: list[list[routing.Ranked]] = field(default_factory=list)


def _time(paths: Sequence[InMemory], asks: Sequence[Ask], warmup: int) -> None:
    """Time the paths referral by referral, interleaved and in turns, so noise hits them alike."""
    for ask in asks[:warmup]:
        for path in paths:
            path.route(ask)
    gc.collect()
    for i, ask in enumerate(asks):
        for k in range(len(paths)):
            path = paths[(i + k) % len(paths)]
            if i >= path.limit:
                continue
            wall, cpu = time.perf_counter_ns(), time.process_time_ns()
            ranking = path.route(ask)
            path.cpu_ns.append(time.process_time_ns() - cpu)
            path.wall_ns.append(time.perf_counter_ns() - wall)
            path.rankings.append(ranking)


def _same(
    rankings: Sequence[list[routing.Ranked]], reference: Sequence[list[routing.Ranked]]
) -> str:
    equal = sum(1 for a, b in zip(rankings, reference, strict=False) if a == b)
    return f"{equal}/{len(rankings)}"


def _table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load(averages: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in averages)


def _pg_address() -> tuple[str, int]:
    parts = urlsplit(PG_ADMIN)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(_pg_address(), timeout=1):
            return True
    except OSError:
        return False


async def _pg_admin(statement: str) -> str:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(statement)
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def _db_rows(
    url: str,
    label: str,
    data: synthetic.Dataset,
    context: Context,
    index: Indexed,
    asks: Sequence[Ask],
    jisr: Sequence[list[routing.Ranked]],
) -> tuple[list[Row], str]:
    migrations.upgrade(url)
    loaded, timed = asyncio.run(
        database.run(url, label, data, context, asks, warmup=30, index=index)
    )
    rows = [
        Row(
            t.path,
            t.samples_ns,
            cpu_ns=t.cpu_ns,
            same=_same(t.rankings, jisr),
            queries=f"{statistics.fmean(t.queries):.1f} (max {max(t.queries)})",
        )
        for t in timed
    ]
    return rows, f"{label}: loaded in {loaded:.1f} s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.routing", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--referrals", type=int, default=3000, help="referrals for the jisr path")
    parser.add_argument(
        "--naive-referrals", type=int, default=1000, help="referrals for the naive peer"
    )
    parser.add_argument("--db-referrals", type=int, default=300, help="referrals per database path")
    parser.add_argument("--no-db", action="store_true", help="skip the database paths")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    load_before = os.getloadavg()

    data = synthetic.generate(args.referrals)
    context = Context.of(data)
    agreements, held = data.domain, data.held
    started = time.perf_counter()
    index = Indexed(agreements, held)
    index_ms = (time.perf_counter() - started) * 1e3
    asks = data.asks

    indexed = InMemory("jisr (in-memory, indexed)", lambda a: index.route(a, context), len(asks))
    scan = InMemory(
        "reference: naive scan",
        lambda a: naive(a, context, agreements, held),
        args.naive_referrals,
    )
    _time([indexed, scan], asks, warmup=100)
    jisr = indexed.rankings
    rows = [
        Row(indexed.path, indexed.wall_ns, cpu_ns=indexed.cpu_ns),
        Row(scan.path, scan.wall_ns, same=_same(scan.rankings, jisr), cpu_ns=scan.cpu_ns),
    ]

    notes: list[str] = []
    pg_version = "not measured"
    if not args.no_db:
        db_asks = asks[: args.db_referrals]
        with tempfile.TemporaryDirectory(prefix="jisr-bench-") as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            db_rows, note = _db_rows(url, "sqlite", data, context, index, db_asks, jisr)
            rows += db_rows
            notes.append(note)
        if args.no_postgres:
            pass
        elif not _pg_reachable():
            host, port = _pg_address()
            notes.append(f"postgresql: not reachable on {host}:{port}, skipped")
        else:
            name = f"jisr_bench_{uuid.uuid4().hex[:8]}"
            pg_version = asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
            try:
                base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
                db_rows, note = _db_rows(
                    f"{base}/{name}", "postgresql", data, context, index, db_asks, jisr
                )
                rows += db_rows
                notes.append(note)
            finally:
                asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    eligible = sum(1 for ranking in jisr if routing.best(ranking) is not None)
    candidates = statistics.fmean(len(r) for r in jisr)
    pairs = [index.pairs_checked(ask) for ask in asks]
    summary = data.summary()
    print(_table(rows))
    print()
    print(
        "wall: time.perf_counter_ns per referral; CPU: time.process_time_ns over the same span "
        "(PostgreSQL rows: the client's share only, the server's work is not in it)"
    )
    print(
        f"machine: nproc {len(os.sched_getaffinity(0))}, {_cpu()}, Python {sys.version.split()[0]}, "
        f"{platform.platform()}, SQLite {sqlite3.sqlite_version}, PostgreSQL {pg_version}"
    )
    print(
        "data: "
        + ", ".join(f"{k} {v}" for k, v in summary.items())
        + f"; seed {synthetic.SEED}, decisions at {synthetic.AT.isoformat()}"
    )
    print(
        f"per referral: {candidates:.1f} candidate providers, "
        f"{statistics.fmean(pairs):.0f} (agreement, line) pairs weighed by decide() (max {max(pairs)}), "
        f"{eligible / len(jisr):.0%} with an eligible provider; jisr index built in {index_ms:.0f} ms"
    )
    for note in notes:
        print(note)
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min): {_load(load_before)} at start, {_load(load_after)} at end")
    print(f"total run time {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
