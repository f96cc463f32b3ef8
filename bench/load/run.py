"""Load on the production topology: sustained requests/s and latency per request, and a profile.

    .venv/bin/python -m bench.load.run                          # 50 users for 60 s
    .venv/bin/python -m bench.load.run --users 20 --duration 20 # smoke

It starts `jisr run-services`' topology (`jisr.topology.running`: this machine's
PostgreSQL in a fresh database, Redis databases 12 and 13, two Orthancs, coturn,
the three services each in its own process, worker, beat, nginx) with the demo
seeded, lifts the demo's quotas (1,000s of referrals in a minute would use them
up and turn the run into a test of refusals), stores a few studies in Oran's
Orthanc, refers and shares them with AP-HP and has AP-HP's radiologist sign a
report on each (what the radiologists read), then runs `bench/load/locustfile.py`
headless through nginx. While locust runs, py-spy samples the referral and imaging
service processes. It prints the machine, the table per request type and the
profile's top entries, and drops its databases at the end.

locust (with gevent) and py-spy come from `bench/requirements-load.txt`, installed
on first use into their own venv, /tmp/jisr-bench-load/venv (JISR_BENCH_LOAD_VENV
gives another), never into `.venv`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from jisr.topology import Topology, running

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "bench" / "requirements-load.txt"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOAD_VENV = Path(os.environ.get("JISR_BENCH_LOAD_VENV", "/tmp/jisr-bench-load/venv"))  # noqa: S108
POSTGRES = os.environ.get("JISR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
DEMO_PASSWORD = "jisr-demo"  # noqa: S105 - the documented demo password
PROFILED = ("referral", "imaging")


def load_venv() -> Path:
    """The venv of locust and py-spy, created and filled from requirements-load.txt on first use."""
    marker = LOAD_VENV / ".requirements"
    wanted = REQUIREMENTS.read_text()
    if (LOAD_VENV / "bin" / "locust").exists() and marker.exists() and marker.read_text() == wanted:
        return LOAD_VENV / "bin"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(LOAD_VENV)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        [
            str(LOAD_VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
    )
    marker.write_text(wanted)
    return LOAD_VENV / "bin"


# -- the data the radiologists read ---------------------------------------------------------


def _token(http: httpx.Client, username: str) -> dict[str, str]:
    answer = http.post("/auth/token", data={"username": username, "password": DEMO_PASSWORD})
    answer.raise_for_status()
    return {"Authorization": "Bearer " + answer.json()["access_token"]}


def _study() -> tuple[bytes, str]:
    ds = dcmread(str(get_testdata_file("CT_small.dcm")))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (
        generate_uid() for _ in range(3)
    )
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), str(ds.StudyInstanceUID)


def prepare_shares(t: Topology, count: int) -> dict[str, object]:
    """`count` studies STOWed by Oran, referred and shared with AP-HP, each with a signed report."""
    shares = []
    with httpx.Client(base_url=t.proxy_url, timeout=60) as http:
        origin = _token(http, "oran.radiologist")
        referrer = _token(http, "oran.referrer")
        reader = _token(http, "aphp.radiologist")
        for n in range(count):
            data, study_uid = _study()
            boundary = uuid.uuid4().hex
            body = (
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                + data
                + f"\r\n--{boundary}--\r\n".encode()
            )
            content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
            http.post(
                "/dicomweb/studies", content=body, headers={**origin, "Content-Type": content_type}
            ).raise_for_status()
            referral = http.post(
                "/api/referrals",
                json={
                    "patient": {
                        "local_id": f"LOAD-IMG-{n}",
                        "name": "Imaging Patient",
                        "sex": "M",
                        "birth_date": "1960-01-01",
                    },
                    "question": "Second reading of this CT?",
                    "summary": "Prepared by bench/load/run.py.",
                    "specialty": "nephrology",
                    "urgency": "routine",
                    "service": "second_opinion",
                    "languages": ["fr"],
                    "study_uids": [study_uid],
                },
                headers=referrer,
            )
            referral.raise_for_status()
            share = http.post(
                "/api/imaging/shares",
                json={"study_uid": study_uid, "referral_id": referral.json()["id"]},
                headers=origin,
            )
            share.raise_for_status()
            share_id = share.json()["id"]
            http.post(
                f"/api/imaging/shares/{share_id}/report",
                json={"findings": "No focal lesion.", "impression": "Normal study."},
                headers=reader,
            ).raise_for_status()
            shares.append({"id": share_id, "shared_study_uid": share.json()["shared_study_uid"]})
    return {"radiologist": "aphp.radiologist", "shares": shares}


async def lift_quotas(database_url: str) -> None:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("UPDATE coverage_lines SET quota = NULL")
    finally:
        await conn.close()


# -- locust and py-spy ------------------------------------------------------------------------


def run_locust(
    bin_dir: Path,
    t: Topology,
    fixture: Path,
    out: Path,
    *,
    users: int,
    rate: float,
    duration: int,
    wait: str,
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start locust headless; its process and the CSV its final statistics go to."""
    prefix = out / "locust"
    process = subprocess.Popen(  # noqa: S603 - locust of our own venv
        [
            str(bin_dir / "locust"),
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--only-summary",
            "-u",
            str(users),
            "-r",
            str(rate),
            "-t",
            f"{duration}s",
            "--host",
            t.proxy_url,
            "--csv",
            str(prefix),
            "--loglevel",
            "WARNING",
            "--reset-stats",
            "--stop-timeout",
            "5",
        ],
        env={**os.environ, "JISR_LOAD_FIXTURE": str(fixture), "JISR_LOAD_WAIT": wait},
        stdout=subprocess.DEVNULL,
    )
    return process, prefix.with_name("locust_stats.csv")


def start_profiles(
    bin_dir: Path, t: Topology, out: Path, duration: int
) -> list[tuple[str, subprocess.Popen[bytes], Path]]:
    started = []
    for name in PROFILED:
        pid = t.processes[name].pid
        if pid is None:
            continue
        raw = out / f"profile-{name}.txt"
        process = subprocess.Popen(  # noqa: S603 - py-spy of our own venv
            [
                str(bin_dir / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(duration),
                "--rate",
                "100",
                "--format",
                "raw",
                "--nonblocking",
                "--idle",
                "--output",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append((name, process, raw))
    return started


def _where(frame: str) -> str:
    """`function (path/to/module.py:line)` as `module.function`, path shortened."""
    name, _, location = frame.partition(" (")
    path = location.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", str(ROOT) + "/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path.removesuffix('.py').replace('/', '.')}.{name}"


def _area(frame: str) -> str:
    path = frame.partition(" (")[2]
    for key, area in (
        ("sqlalchemy", "SQLAlchemy"),
        ("asyncpg", "asyncpg"),
        ("pydantic", "pydantic"),
        ("starlette", "Starlette/FastAPI"),
        ("fastapi", "Starlette/FastAPI"),
        ("uvicorn", "uvicorn"),
        ("h11", "uvicorn"),
        ("httptools", "uvicorn"),
        ("jwt", "JWT (PyJWT, cryptography)"),
        ("cryptography", "JWT (PyJWT, cryptography)"),
        ("prometheus_client", "metrics"),
        ("shared/", "jisr shared/"),
        ("services/", "jisr services/"),
        ("argon2", "argon2 (password check)"),
        ("asyncio", "asyncio"),
        ("logging", "logging"),
        ("json", "json"),
    ):
        if key in path:
            return area
    return "other"


IDLE = (
    "selectors.py",
    "threading.py",
    "concurrent/futures/thread.py",
    "queue.py",
    "asyncio/runners.py",
)
"""Where a sampled thread waits: the event loop's select (with uvloop, a stack that ends in
`Runner.run` is in uvloop's C loop: waiting in epoll, or its own socket work), executor queues."""
OURS = ("shared/", "services/", "jisr/")
EVERYTHING = ("jisr/cli.py", "jisr/serve.py")
"""Frames under which every sample sits: left out of the inclusive table."""


def _path(frame: str) -> str:
    return frame.partition(" (")[2].rsplit(":", 1)[0]


def profile_table(
    raw: Path, top: int
) -> tuple[int, int, list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]:
    """Samples (all, busy); top functions by own time; by time inside (inclusive); own time by area."""
    own: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        total += count
        if _path(frames[-1]).endswith(IDLE):
            continue
        busy += count
        own[_where(frames[-1])] += count
        areas[_area(frames[-1])] += count
        for name in {
            _where(f)
            for f in frames
            if _path(f).startswith(OURS) and not _path(f).endswith(EVERYTHING)
        }:
            inside[name] += count
    return total, busy, own.most_common(top), inside.most_common(top), areas.most_common()


def profile_report(name: str, raw: Path, top: int) -> str:
    total, busy, own, inside, areas = profile_table(raw, top)
    share = 100 / (busy or 1)
    out = [
        f"\n## Profile of the {name} service: {total} samples of its threads at 100 Hz, {busy} busy "
        "(not waiting in the event loop or on a queue); shares of the busy ones\n",
        "| own time in | share |\n|---|---:|",
        *(f"| {area} | {count * share:.1f} % |" for area, count in areas),
        "\n| function (own time) | share |\n|---|---:|",
        *(f"| `{where}` | {count * share:.1f} % |" for where, count in own),
        "\n| jisr function (time inside, callees included) | share |\n|---|---:|",
        *(f"| `{where}` | {count * share:.1f} % |" for where, count in inside),
    ]
    return "\n".join(out)


# -- the report -------------------------------------------------------------------------------


def stats_table(stats_csv: Path, duration: int) -> str:
    rows = list(csv.DictReader(stats_csv.open()))
    lines = [
        "| request | count | req/s | p50 ms | p95 ms | p99 ms | failures |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        name = row["Name"] if row["Name"] != "Aggregated" else "**all requests**"
        label = (
            f"{row['Type']} {name}"
            if row["Name"] != "Aggregated" and not name.startswith(row["Type"])
            else name
        )
        lines.append(
            f"| {label} | {row['Request Count']} | {float(row['Requests/s']):.1f} | "
            f"{row['50%']} | {row['95%']} | {row['99%']} | {row['Failure Count']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.load.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=10.0)
    parser.add_argument("--duration", type=int, default=60, help="seconds of load")
    parser.add_argument("--shares", type=int, default=5, help="shares the radiologists read")
    parser.add_argument("--top", type=int, default=12, help="profile entries shown")
    parser.add_argument(
        "--wait",
        default="0.5,1.5",
        help="think time between actions, min,max seconds; 0,0: capacity",
    )
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--redis-db", type=int, default=12)
    args = parser.parse_args(argv)

    bin_dir = load_venv()
    out = Path(tempfile.mkdtemp(prefix="jisr-load-"))
    started_at = datetime.now(UTC)
    load_before = os.getloadavg()
    with running(
        out / "topology",
        database=f"jisr_load_{uuid.uuid4().hex[:8]}",
        postgres=POSTGRES,
        redis_db=args.redis_db,
        fresh=True,
        drop_databases=True,
    ) as t:
        asyncio.run(lift_quotas(t.database_url))
        fixture = out / "fixture.json"
        fixture.write_text(json.dumps(prepare_shares(t, args.shares)))
        load_ready = os.getloadavg()
        began = time.monotonic()
        locust, stats = run_locust(
            bin_dir,
            t,
            fixture,
            out,
            users=args.users,
            rate=args.spawn_rate,
            duration=args.duration,
            wait=args.wait,
        )
        # Profile the steady state: from the moment every user is spawned (and signed in).
        ramp = args.users / args.spawn_rate + 3
        time.sleep(ramp)
        profiled = max(int(args.duration - ramp - 3), 5)
        profiles = [] if args.no_profile else start_profiles(bin_dir, t, out, profiled)
        locust.wait(timeout=args.duration + 60)
        elapsed = time.monotonic() - began
        load_during = os.getloadavg()
        for _, process, _ in profiles:
            process.wait(timeout=60)

    print(f"# Load on the services topology, {started_at:%Y-%m-%d %H:%M} UTC")
    print(
        f"nproc {os.cpu_count()}, 1-minute load {load_before[0]:.2f} before, {load_ready[0]:.2f} at "
        f"start, {load_during[0]:.2f} at the end; {args.users} users (spawn {args.spawn_rate}/s), "
        f"{args.duration} s ({elapsed:.0f} s with ramp-up and stop), think time {args.wait} s, "
        "through nginx; locust and the platform on the same machine; the table counts from the "
        f"moment every user is spawned (--reset-stats); py-spy samples {profiled} s of that "
        "steady state\n"
    )
    print(stats_table(stats, args.duration))
    for name, _, raw in profiles:
        if not raw.exists():
            print(f"\n(no profile of {name}: py-spy wrote nothing)")
            continue
        print(profile_report(name, raw, args.top))
    print(f"\nraw results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
