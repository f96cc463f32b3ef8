"""DICOMweb through the service vs Orthanc direct: STOW-RS ingest and WADO-RS retrieve.

    .venv/bin/python -m bench.dicomweb

Issue 4, item 8: the service's overhead over Orthanc direct must stay under 20 %.
Generates a CT-like series (default 200 instances of 512x512, 16 bits) into a
temporary folder, starts one Orthanc (temporary configuration, free ports,
authentication on, as `tests/imaging/conftest.py` does) and serves the whole app
with uvicorn on a free loopback port in a thread (as `tests/imaging/test_dicomweb_out.py`
does), with an institution whose `imaging_store` and the platform's shared store are
that same Orthanc. Then, with the same files in the same run, interleaved:

1. STOW-RS of the series in batches of multipart requests to Orthanc's
   `/dicom-web/studies` and to Jisr's `POST /dicomweb/studies`; the study is deleted
   from Orthanc after each run so both store fresh;
2. WADO-RS retrieve of one de-identified study (shared through Jisr's own API for a
   referral): Orthanc's `/dicom-web/studies/{uid}` and Jisr's partner
   `/dicomweb/studies/{uid}` — the same bytes from the same Orthanc — three ways for
   Jisr: the service streaming them itself, and behind nginx (rendered from the
   topology's template, `jisr.topology.configs`) with `JISR_IMAGING_ACCEL_REDIRECT`,
   where nginx sends Orthanc's answer; and beside them Orthanc through that same nginx
   without Jisr (the template's WADO-RS location made public at `/_bench/orthanc/`),
   the floor any proxy in front costs, so the table shows what Jisr itself adds.

Prints a Markdown table; `bench/README.md` keeps the results.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from bench.procs import descendants, process_cpu_s
from jisr.app import create_app
from jisr.topology import configs
from shared import migrations
from shared.identity.models import Role
from shared.platform import Platform
from shared.registry.models import Institution
from shared.settings import Settings
from tests.factories import Factory
from tests.imaging.conftest import OrthancServer, running_orthanc
from tests.imaging.proxy import running_nginx
from tests.imaging.test_dicomweb_out import serving

TARGET = 0.20
SPECIALTY = "paediatric_surgery"
WADO_ACCEPT = 'multipart/related; type="application/dicom"'


# -- data ----------------------------------------------------------------------------------


def ct_series(count: int, size: int, folder: Path) -> tuple[str, list[bytes]]:
    """A CT series of `count` slices of size x size, 12 bits stored in 16, written to `folder`."""
    rng = np.random.default_rng(20261122)
    study, series = generate_uid(), generate_uid()
    y, x = np.mgrid[0:size, 0:size]
    body = ((x - size / 2) ** 2 + (y - size / 2) ** 2) < (0.45 * size) ** 2
    files = []
    for n in range(1, count + 1):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName = "BENCH-0001", "Doe^Jane"
        ds.PatientSex, ds.PatientBirthDate = "F", "19800203"
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20261122", "093000", "1"
        ds.AccessionNumber, ds.StudyDescription = "ACC-BENCH", "Chest CT"
        ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "CT", 1, "Axial 1 mm"
        ds.InstanceNumber = n
        ds.ImagePositionPatient = [-250.0, -250.0, float(n)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceThickness, ds.PixelSpacing = 1.0, [0.977, 0.977]
        ds.BurnedInAnnotation = "NO"
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        noise = rng.integers(0, 80, size=(size, size), dtype=np.uint16)
        ds.PixelData = (np.where(body, 1000 + noise, noise)).astype("<u2").tobytes()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        (folder / f"{n:04d}.dcm").write_bytes(data)
        files.append(data)
    return study, files


def multipart(files: Sequence[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = []
    for data in files:
        chunks += [
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
            data,
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


# -- measurements --------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    operation: str
    path: str
    megabytes: float
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    """CPU seconds the serving side spent (every process this benchmark started: Orthanc,
    Jisr, nginx), each run: on two cores, what Jisr spends competes with Orthanc."""
    floor: Row | None = None
    """The same request through the same proxy without Jisr, when there is a proxy."""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


HEADER = [
    "operation",
    "path",
    "runs",
    "MB",
    "median s",
    "p95 s",
    "MB/s (median)",
    "overhead",
    "< 20 %",
    "over the proxy floor",
    "serving CPU s (median)",
]


def _percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def _cells(row: Row, direct: Row | None) -> list[str]:
    overhead, verdict = "-", "-"
    if direct is not None:
        ratio = row.median / direct.median - 1
        overhead = f"{ratio * 100:+.1f} %"
        verdict = "yes" if ratio < TARGET else "**no**"
    return [
        row.operation,
        row.path,
        str(len(row.seconds)),
        f"{row.megabytes:.1f}",
        f"{row.median:.3f}",
        f"{_percentile(row.seconds, 95):.3f}",
        f"{row.megabytes / row.median:.1f}",
        overhead,
        verdict,
        f"{(row.median / row.floor.median - 1) * 100:+.1f} %" if row.floor else "-",
        f"{statistics.median(row.cpu):.2f}" if row.cpu else "-",
    ]


def until_quiet(deadline_s: float = 60.0, window_s: float = 0.5) -> float:
    """Wait until the serving side is idle (under 5 % of a core over `window_s`); returns
    how long that took. Each Jisr server starts its de-identification pool at start-up
    (about 2 s of CPU): measured during it, the first runs competed with it."""
    started = time.perf_counter()
    while time.perf_counter() - started < deadline_s:
        before = serving_cpu()
        time.sleep(window_s)
        if serving_cpu() - before < 0.05 * window_s:
            break
    return time.perf_counter() - started


def serving_cpu() -> float:
    """CPU seconds (user and system) of every process descended from this one so far."""
    return sum(process_cpu_s(pid) for pid in descendants(os.getpid()))


def table(groups: Sequence[tuple[Row, Sequence[Row]]]) -> str:
    """Each group: Orthanc direct, then the rows compared with it."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for direct, others in groups:
        lines.append("| " + " | ".join(_cells(direct, None)) + " |")
        lines.extend("| " + " | ".join(_cells(row, direct)) + " |" for row in others)
    return "\n".join(lines)


def interleaved(
    runs: Sequence[tuple[Row, Callable[[], None], Callable[[], None]]], repeats: int, warmup: int
) -> None:
    """Each path `warmup + repeats` times, in turns, so interference falls on both alike.

    Each run is (row, timed call, untimed reset after it)."""
    for i in range(warmup + repeats):
        for k in range(len(runs)):
            row, call, reset = runs[(i + k) % len(runs)]
            cpu = serving_cpu()
            start = time.perf_counter()
            call()
            elapsed = time.perf_counter() - start
            cpu = serving_cpu() - cpu
            reset()
            if i >= warmup:
                row.seconds.append(elapsed)
                row.cpu.append(cpu)


# -- the platform --------------------------------------------------------------------------


@dataclass(slots=True)
class Setup:
    settings: Settings
    uploader: str
    """Token of a radiologist of the institution whose imaging_store is the Orthanc."""
    referrer: str
    reader: str
    """Token of the provider's radiologist, who reads the share through WADO-RS."""


def settings_for(folder: Path, orthanc: OrthancServer) -> Settings:
    db = folder / "jisr.db"
    url = f"sqlite+aiosqlite:///{db}"
    migrations.upgrade(url)
    return Settings(
        environment="test",
        data_dir=folder / "data",
        database_url=url,
        signing_key_path=folder / "signing-key.pem",
        seed_demo=False,
        log_json=False,
        log_level="WARNING",
        orthanc_username=orthanc.username,
        orthanc_password=orthanc.password,
        shared_store_url=orthanc.url,
        shared_store_username=orthanc.username,
        shared_store_password=orthanc.password,
    )


async def populate(settings: Settings, orthanc: OrthancServer) -> Setup:
    """Origin (its originals in the Orthanc) refers to a provider under an imaging_review line."""
    platform = Platform.from_settings(settings)
    try:
        f = Factory(platform)
        origin = await f.institution("DZ-BENCH-ORIGIN")
        provider = await f.institution("DZ-BENCH-PROVIDER")
        async with platform.database.transaction() as session:
            row = await session.get(Institution, origin.id)
            assert row is not None
            row.imaging_store = orthanc.url
        lines = [
            {"service": "second_opinion", "specialties": [SPECIALTY]},
            {
                "service": "imaging_review",
                "specialties": [SPECIALTY],
                "identification": "pseudonymised",
            },
        ]
        await f.agreement(origin, provider, valid_from=date(2020, 1, 1), lines=lines)
        uploader = await f.user(origin, Role.RADIOLOGIST)
        referrer = await f.user(origin, Role.REFERRING_PHYSICIAN)
        reader = await f.user(provider, Role.RADIOLOGIST)
        return Setup(
            settings,
            f.token(uploader, ttl_s=3600),
            f.token(referrer, ttl_s=3600),
            f.token(reader, ttl_s=3600),
        )
    finally:
        await platform.database.dispose()


def share(client: httpx.Client, base: str, setup: Setup, study: str) -> tuple[str, float]:
    """A referral naming the study, then a share of it; returns the shared UID and the share's s."""
    headers = {"Authorization": f"Bearer {setup.referrer}"}
    referral = client.post(
        f"{base}/api/referrals",
        json={
            "patient": {
                "local_id": "BENCH-1",
                "name": "Jane Doe",
                "sex": "F",
                "birth_date": "1980-02-03",
            },
            "question": "Second opinion on the chest CT?",
            "summary": "Benchmark.",
            "specialty": SPECIALTY,
            "urgency": "routine",
            "service": "second_opinion",
            "languages": ["fr"],
            "study_uids": [study],
        },
        headers=headers,
    )
    referral.raise_for_status()
    start = time.perf_counter()
    made = client.post(
        f"{base}/api/imaging/shares",
        json={"study_uid": study, "referral_id": referral.json()["id"]},
        headers=headers,
        timeout=600,
    )
    elapsed = time.perf_counter() - start
    if made.status_code != 201:
        raise RuntimeError(f"share refused: {made.status_code} {made.text[:500]}")
    return str(made.json()["shared_study_uid"]), elapsed


@contextmanager
def serving_apart(settings: Settings) -> Iterator[str]:
    """The whole app served by uvicorn in a process of its own (forked), as in production,
    so that the benchmark's client does not share an interpreter lock with the server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog until the child accepts them
    port = sock.getsockname()[1]
    process = multiprocessing.get_context("fork").Process(
        target=_serve, args=(settings, sock)
    )  # not daemonic: the server starts a de-identification pool of its own
    process.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()  # uvicorn shuts down on SIGTERM
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()
        sock.close()


def _serve(settings: Settings, sock: socket.socket) -> None:
    platform = Platform.from_settings(settings)
    config = uvicorn.Config(create_app(platform), log_level="warning", ws="none", access_log=False)
    # Server.run, not asyncio.run(serve()): it picks uvloop as `jisr serve` (uvicorn.run) does;
    # and with its lifespan, so that the share path's pool starts with the server, as there.
    uvicorn.Server(config).run(sockets=[sock])


FLOOR = "/_bench/orthanc/studies/"


def with_floor(server: str) -> str:
    """The rendered server block plus the template's WADO-RS location, public at `FLOOR`.

    The same proxying (Orthanc's credentials, headers, buffers) without the service:
    neither `internal` nor the service's callback on Orthanc's refusals.
    """
    internal = f"location {configs.ACCEL_REDIRECT}studies/ {{"
    start = server.index(internal)
    end = server.index("\n    }\n", start)
    body = server[start + len(internal) : end]
    kept = [
        line
        for line in body.splitlines()
        if line.strip() not in ("internal;", "proxy_intercept_errors on;")
        and not line.strip().startswith("error_page ")
    ]
    floor = f"    location {FLOOR} {{" + "\n".join(kept) + "\n    }\n"
    closing = server.rindex("}")
    return server[:closing] + floor + server[closing:]


# -- Orthanc -------------------------------------------------------------------------------


def delete_study(client: httpx.Client, orthanc: OrthancServer, study: str) -> None:
    found = client.post(f"{orthanc.url}/tools/lookup", content=study).json()
    for item in found:
        if item["Type"] == "Study":
            client.delete(f"{orthanc.url}/studies/{item['ID']}").raise_for_status()


def count_instances(client: httpx.Client, orthanc: OrthancServer, study: str) -> int:
    found = client.post(
        f"{orthanc.url}/tools/find",
        json={"Level": "Instance", "Query": {"StudyInstanceUID": study}},
    ).json()
    return len(found)


def stow(
    client: httpx.Client, url: str, headers: dict[str, str], bodies: Sequence[tuple[bytes, str]]
) -> None:
    for body, content_type in bodies:
        answer = client.post(url, content=body, headers={**headers, "Content-Type": content_type})
        if answer.status_code != 200:
            raise RuntimeError(
                f"STOW-RS to {url} answered {answer.status_code}: {answer.text[:500]}"
            )


def wado(client: httpx.Client, url: str, headers: dict[str, str], expected: int) -> int:
    """Read the whole multipart answer; returns its size, checking it carries `expected` parts."""
    size, parts = 0, 0
    with client.stream("GET", url, headers={**headers, "Accept": WADO_ACCEPT}) as answer:
        if answer.status_code != 200:
            answer.read()
            raise RuntimeError(f"WADO-RS {url} answered {answer.status_code}: {answer.text[:500]}")
        marker, tail = b"Content-Type: application/dicom\r\n", b""
        for chunk in answer.iter_bytes():
            size += len(chunk)
            window = tail + chunk  # a part header may be split across chunks
            parts += window.count(marker)
            tail = window[-(len(marker) - 1) :]
    if parts != expected:
        raise RuntimeError(f"WADO-RS {url} sent {parts} parts, expected {expected}")
    return size


# -- main ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--size", type=int, default=512, help="rows and columns")
    parser.add_argument("--batch", type=int, default=20, help="instances per STOW-RS request")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--server",
        choices=("process", "thread"),
        default="process",
        help="serve Jisr from a process of its own (default) or a thread of the benchmark's",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="jisr-bench-dicomweb-") as tmp:
        folder = Path(tmp)
        (folder / "series").mkdir()
        study, files = ct_series(args.instances, args.size, folder / "series")
        megabytes = sum(len(d) for d in files) / 1e6
        bodies = [multipart(files[i : i + args.batch]) for i in range(0, len(files), args.batch)]
        print(
            f"{len(files)} instances of {args.size}x{args.size}, {megabytes:.1f} MB, "
            f"{len(bodies)} STOW-RS requests of {args.batch}",
            file=sys.stderr,
        )
        with running_orthanc(folder / "orthanc") as orthanc:
            settings = settings_for(folder, orthanc)
            redirecting = settings.model_copy(
                update={"imaging_accel_redirect": configs.ACCEL_REDIRECT}
            )
            setup = asyncio.run(populate(settings, orthanc))
            serve = serving_apart if args.server == "process" else serving
            with (
                serve(settings) as base,
                serve(redirecting) as behind,
                running_nginx(
                    folder / "nginx",
                    dict.fromkeys(
                        ("referral", "imaging", "teleconsult"), behind.removeprefix("http://")
                    ),
                    configs.shared_orthanc_env(orthanc.url, orthanc.username, orthanc.password),
                    edit=with_floor,
                ) as proxy,
                httpx.Client(auth=(orthanc.username, orthanc.password), timeout=300) as admin,
                httpx.Client(timeout=300) as client,
            ):
                quiet_s = until_quiet()
                print(f"serving side quiet after {quiet_s:.1f} s", file=sys.stderr)
                direct_auth = {"Authorization": _basic(orthanc)}
                jisr_auth = {"Authorization": f"Bearer {setup.uploader}"}

                def reset() -> None:
                    got = count_instances(admin, orthanc, study)
                    if got != len(files):
                        raise RuntimeError(f"{got} instances stored, expected {len(files)}")
                    delete_study(admin, orthanc, study)

                stow_direct = Row("STOW-RS", "Orthanc direct `/dicom-web/studies`", megabytes)
                stow_jisr = Row("STOW-RS", "Jisr `POST /dicomweb/studies`", megabytes)
                interleaved(
                    [
                        (
                            stow_direct,
                            lambda: stow(
                                client, f"{orthanc.url}/dicom-web/studies", direct_auth, bodies
                            ),
                            reset,
                        ),
                        (
                            stow_jisr,
                            lambda: stow(client, f"{base}/dicomweb/studies", jisr_auth, bodies),
                            reset,
                        ),
                    ],
                    args.repeats,
                    args.warmup,
                )
                # Keep one copy of the originals, stored through Jisr, and share it.
                stow(client, f"{base}/dicomweb/studies", jisr_auth, bodies)
                shared_uid, share_s = share(client, base, setup, study)
                print(f"share made in {share_s:.1f} s: {shared_uid}", file=sys.stderr)
                reader = {"Authorization": f"Bearer {setup.reader}"}
                sizes: dict[str, int] = {}
                wado_direct = Row("WADO-RS study", "Orthanc direct `/dicom-web/studies/{uid}`", 0.0)
                wado_jisr = Row("WADO-RS study", "Jisr `/dicomweb/studies/{uid}`", 0.0)
                wado_floor = Row(
                    "WADO-RS study", "Orthanc through nginx, no Jisr (proxy floor)", 0.0
                )
                wado_accel = Row(
                    "WADO-RS study",
                    "Jisr through nginx, X-Accel-Redirect `/dicomweb/studies/{uid}`",
                    0.0,
                    floor=wado_floor,
                )

                def get(name: str, url: str, headers: dict[str, str]) -> Callable[[], None]:
                    def call() -> None:
                        sizes[name] = wado(client, url, headers, len(files))

                    return call

                interleaved(
                    [
                        (
                            wado_direct,
                            get(
                                "direct",
                                f"{orthanc.url}/dicom-web/studies/{shared_uid}",
                                direct_auth,
                            ),
                            lambda: None,
                        ),
                        (
                            wado_jisr,
                            get("jisr", f"{base}/dicomweb/studies/{shared_uid}", reader),
                            lambda: None,
                        ),
                        (
                            wado_floor,
                            get("floor", f"{proxy}{FLOOR}{shared_uid}", {}),
                            lambda: None,
                        ),
                        (
                            wado_accel,
                            get("accel", f"{proxy}/dicomweb/studies/{shared_uid}", reader),
                            lambda: None,
                        ),
                    ],
                    args.repeats,
                    args.warmup,
                )
                for name, row in (
                    ("direct", wado_direct),
                    ("jisr", wado_jisr),
                    ("floor", wado_floor),
                    ("accel", wado_accel),
                ):
                    row.megabytes = sizes[name] / 1e6

    print(
        table(
            [
                (stow_direct, [stow_jisr]),
                (wado_direct, [wado_jisr, wado_floor, wado_accel]),
            ]
        )
    )
    print(
        f"\nnproc {os.cpu_count()}, load average {load[0]:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end; share (de-identification of {len(files)} "
        f"instances) {share_s:.1f} s; total {time.perf_counter() - started:.0f} s"
    )
    return 0


def _basic(orthanc: OrthancServer) -> str:
    request = httpx.Request("GET", orthanc.url)
    httpx.BasicAuth(orthanc.username, orthanc.password).auth_flow(request).__next__()
    return request.headers["Authorization"]


if __name__ == "__main__":
    sys.exit(main())
