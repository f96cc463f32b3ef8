"""De-identification throughput on a generated CT series, with a leak and reference check.

    .venv/bin/python -m bench.deid

Generates a CT series (default 300 instances of 512x512, 16-bit) under a
temporary folder, then de-identifies the same files with:

- the floor: pydicom read-then-write, nothing changed (1 and 2 processes);
- jisr: `services.imaging.deid.deidentify` (Basic profile, `Options()`), alone
  and followed by the gate's `check`, in 1 process and in a Pool of 2; and the
  platform's whole share path, `services.imaging.shares.deidentify.deidentify_study`
  (the study's identifiers, each written file read back and gated), in 1 process
  and over its pool (started before the time, as a server keeps it);
- the peers `dicognito` and `deid` (pydicom-deid), each as its command line in
  its own venv (`bench/requirements-peers.txt`, created on first use under
  /tmp/jisr-bench-peers/venv); start-up is measured apart by running the same
  command on one file;
- the reference: Orthanc's C++ anonymization, `POST /studies/{id}/anonymize`,
  on Debian's /usr/sbin/Orthanc started on free loopback ports (upload and
  download are not timed, only the synchronous anonymize call).

Every output is then checked with the jisr gate (`identifiers_of` the
originals merged with `|`, `scan` of each output) and for broken references:
every Referenced SOP Instance UID must name the output of the instance the
original pointed to, Study, Series and Frame of Reference UIDs must be one
value each across the series, the file meta's Media Storage SOP Instance UID
must equal the SOP Instance UID, and the pixel data must be the original's.
Prints a Markdown table; `bench/README.md` keeps the results.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import io
import json
import multiprocessing
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

import httpx
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from jisr.topology.processes import free_port, stop
from services.imaging.deid import Identifiers, Options, check, deidentify, identifiers_of, scan
from services.imaging.shares.deidentify import PARALLEL_FROM, PROCESSES, deidentify_study

POOL = max(2, PROCESSES)  # the share path over a pool, whether or not the platform would use one

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "bench" / "requirements-peers.txt"
PEERS_VENV = Path(os.environ.get("JISR_BENCH_PEERS_VENV", "/tmp/jisr-bench-peers/venv"))  # noqa: S108
ORTHANC = Path(os.environ.get("JISR_ORTHANC", "/usr/sbin/Orthanc"))
KEY = b"bench-agreement-key-0123456789ab"
PSEUDONYM = "JISR-BENCH-01"
OPTIONS = Options()

PATIENT_NAME = "BENALI^AHMED^^MR"
PATIENT_ID = "MRN-4471902"
OTHER_IDS = ["NID-19840212-7731", "OLD-556021"]
ACCESSION = "ACC-2026-118822"
PRIVATE_CREATOR = "ACME_CT_NOTES"


# ---------------------------------------------------------------- the series


def generate_series(folder: Path, count: int, size: int = 512) -> list[Path]:
    """A CT series with the identifiers a real one carries, and some it should not."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261122)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    yy, xx = np.mgrid[:size, :size]
    body = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size * 0.42) ** 2
    base = np.where(body, 1040, 0).astype(np.int16)  # water-ish inside, air outside
    paths: list[Path] = []
    previous: str | None = None
    for n in range(1, count + 1):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20261103"
        ds.StudyTime = ds.SeriesTime = "101512"
        ds.AcquisitionTime = ds.ContentTime = f"1016{n % 60:02d}"
        ds.AccessionNumber = ACCESSION
        ds.Modality = "CT"
        ds.Manufacturer = "ACME Medical"
        ds.InstitutionName = "Al Noor General Hospital"
        ds.InstitutionAddress = "12 Corniche Road, Tripoli"
        ds.ReferringPhysicianName = "HADDAD^SAMIR"
        ds.StationName = "CT-ROOM-2"
        ds.StudyDescription = "CT THORAX"
        ds.SeriesDescription = "Thorax 1.0 mm"
        ds.OperatorsName = "KHOURY^LINA"
        ds.ManufacturerModelName = "Vista 64"
        if previous is not None:
            ref = Dataset()
            ref.ReferencedSOPClassUID = CTImageStorage
            ref.ReferencedSOPInstanceUID = previous
            ds.ReferencedImageSequence = DicomSequence([ref])
        ds.PatientName = PATIENT_NAME
        ds.PatientID = PATIENT_ID
        ds.PatientBirthDate = "19840212"
        ds.PatientSex = "M"
        ds.OtherPatientIDs = OTHER_IDS
        ds.PatientAge = "042Y"
        ds.PatientWeight = "78"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = "1.0"
        ds.KVP = "120"
        ds.DeviceSerialNumber = "SN-88231"
        ds.SoftwareVersions = "VB20"
        ds.ProtocolName = "Thorax routine"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyID = "5521"
        ds.SeriesNumber = 2
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = n
        ds.ImagePositionPatient = [-250.0, -250.0, -float(n)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = -float(n)
        ds.ImageComments = f"Follow-up for Ahmed Benali, slice {n}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.PixelSpacing = [0.976562, 0.976562]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 1
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        ds.BurnedInAnnotation = "NO"
        block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
        block.add_new(0x01, "LO", "BENALI^AHMED")
        block.add_new(0x02, "LT", f"Patient {PATIENT_ID}, called Ahmed Benali at 10:05")
        noise = rng.integers(0, 60, size=(size, size), dtype=np.int16)
        ds.PixelData = (base + noise * body).astype("<i2").tobytes()
        path = folder / f"CT{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
        previous = sop
    return paths


# ---------------------------------------------------------------- in-process tools


def _floor(job: tuple[Path, Path]) -> None:
    source, out = job
    pydicom.dcmread(source).save_as(out / source.name)


def _jisr(job: tuple[Path, Path]) -> None:
    source, out = job
    result = deidentify(pydicom.dcmread(source), key=KEY, pseudonym=PSEUDONYM, options=OPTIONS)
    result.save_as(out / source.name, enforce_file_format=True)


def _jisr_checked(job: tuple[Path, Path]) -> None:
    source, out = job
    original = pydicom.dcmread(source)
    own = identifiers_of(original)  # read once, as the platform does
    result = deidentify(original, key=KEY, pseudonym=PSEUDONYM, options=OPTIONS, own=own)
    check(result, own)
    result.save_as(out / source.name, enforce_file_format=True)


def _share_path(files: Sequence[Path], out: Path, processes: int) -> float:
    """The platform's own path for a share (`deidentify_study`): the study's identifiers
    merged over every instance, each written file read back and gated; files read from and
    written to disk inside the time."""
    out.mkdir(parents=True)
    started = time.perf_counter()
    outgoing = deidentify_study(
        [path.read_bytes() for path in files],
        key=KEY,
        pseudonym=PSEUDONYM,
        options=OPTIONS,
        processes=processes,
    )
    for path, data in zip(files, outgoing, strict=True):
        (out / path.name).write_bytes(data)
    return time.perf_counter() - started


def _run_in_process(
    work: Callable[[tuple[Path, Path]], None], files: Sequence[Path], out: Path, processes: int
) -> float:
    out.mkdir(parents=True)
    jobs = [(path, out) for path in files]
    started = time.perf_counter()
    if processes == 1:
        for job in jobs:
            work(job)
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            pool.map(work, jobs, chunksize=8)
    return time.perf_counter() - started


# ---------------------------------------------------------------- peers


def peers_python() -> Path:
    """The peers' own venv, created and filled from requirements-peers.txt on first use."""
    python = PEERS_VENV / "bin" / "python"
    marker = PEERS_VENV / ".requirements"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEERS_VENV)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True
    )
    marker.write_text(wanted)
    return python


def _peer_command(python: Path, tool: str, source: Path, out: Path) -> list[str]:
    if tool == "dicognito":
        # dicognito 0.19.0's console script calls main() without its argument and fails;
        # `python -m dicognito` is its working entry point.
        return [
            str(python),
            "-m",
            "dicognito",
            "--quiet",
            "--output-directory",
            str(out),
            str(source),
        ]
    # deid 0.4.13: the default recipe (deid.dicom), get and put identifiers in one run.
    deid = str(python.parent / "deid")
    return [deid, "--quiet", "--outfolder", str(out), "--overwrite", "identifiers",
            "--action", "all", "--input", str(source)]  # fmt: skip


def _run_peer(python: Path, tool: str, source: Path, out: Path) -> tuple[float, str]:
    out.mkdir(parents=True)
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603
        _peer_command(python, tool, source, out), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    return seconds, "" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-400:]}"


# ---------------------------------------------------------------- Orthanc


@dataclass
class OrthancRun:
    """One Orthanc with the series uploaded: `anonymize` is the timed call, as often as asked."""

    url: str = ""
    client: httpx.Client | None = None
    study: str = ""
    upload_s: float = 0.0
    download_s: float = 0.0
    version: str = ""
    error: str = ""

    def anonymize(self, out: Path | None) -> float:
        """`POST /studies/{id}/anonymize`, timed; the result downloaded to `out` (not timed)
        when given, then deleted so that every run starts from the same store."""
        assert self.client is not None
        started = time.perf_counter()
        answer = self.client.post(f"{self.url}/studies/{self.study}/anonymize", json={})
        seconds = time.perf_counter() - started
        answer.raise_for_status()
        new = answer.json()["ID"]
        if out is not None:
            started = time.perf_counter()
            archive = self.client.get(f"{self.url}/studies/{new}/archive")
            archive.raise_for_status()
            out.mkdir(parents=True)
            with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
                for n, name in enumerate(n for n in zipped.namelist() if not n.endswith("/")):
                    (out / f"{n:04d}.dcm").write_bytes(zipped.read(name))
            self.download_s = time.perf_counter() - started
        self.client.delete(f"{self.url}/studies/{new}").raise_for_status()
        return seconds


@contextmanager
def running_orthanc(files: Sequence[Path], folder: Path) -> Iterator[OrthancRun]:
    """Start Orthanc on free loopback ports and upload the series (not timed)."""
    run = OrthancRun()
    if not ORTHANC.exists():
        run.error = f"{ORTHANC} not installed"
        yield run
        return
    folder.mkdir(parents=True)
    http_port, dicom_port = free_port(), free_port()
    password = secrets.token_urlsafe(16)
    config = {
        "Name": "jisr-bench", "HttpPort": http_port, "DicomPort": dicom_port,
        "DicomAet": "JISRBENCH", "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"), "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {"bench": password},
        "Plugins": [], "LuaScripts": [], "ExecuteLuaEnabled": False,
        "RestApiWriteToFileSystemEnabled": False, "SaveJobs": False,
        "HttpDescribeErrors": True, "StorageCompression": False,
    }  # fmt: skip
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 (our own binary and configuration)
        [str(ORTHANC), str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    run.url = f"http://127.0.0.1:{http_port}"
    try:
        with httpx.Client(
            auth=("bench", password), timeout=300.0, headers={"Accept-Encoding": "identity"}
        ) as client:
            deadline = time.monotonic() + 30
            while run.client is None:
                try:
                    system = client.get(f"{run.url}/system")
                    if system.status_code == 200:
                        run.version = system.json().get("Version", "")
                        run.client = client
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    run.error = "Orthanc did not start"
                    break
                time.sleep(0.05)
            try:
                started = time.perf_counter()
                for path in files if run.client is not None else ():
                    answer = client.post(f"{run.url}/instances", content=path.read_bytes())
                    answer.raise_for_status()
                    run.study = answer.json()["ParentStudy"]
                run.upload_s = time.perf_counter() - started
            except httpx.HTTPError as exc:
                run.error, run.client = f"{type(exc).__name__}: {exc}", None
            yield run
    finally:
        stop(process, 15)
        log.close()


# ---------------------------------------------------------------- the check


@dataclass
class Verdict:
    outputs: int = 0
    unreadable: int = 0
    with_hits: int = 0
    hit_paths: collections.Counter[str] = field(default_factory=collections.Counter)
    broken: int = 0
    problems: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(frozen=True)
class Original:
    identifiers: Identifiers
    pixels: dict[int, bytes]  # by Instance Number
    previous: dict[int, int]  # Instance Number -> Instance Number its reference names


def read_originals(files: Sequence[Path]) -> Original:
    datasets = [pydicom.dcmread(path) for path in files]
    by_uid = {str(ds.SOPInstanceUID): int(ds.InstanceNumber) for ds in datasets}
    previous = {
        int(ds.InstanceNumber): by_uid[str(ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID)]
        for ds in datasets
        if "ReferencedImageSequence" in ds
    }
    return Original(
        identifiers=reduce(lambda a, b: a | b, (identifiers_of(ds) for ds in datasets)),
        pixels={int(ds.InstanceNumber): bytes(ds.PixelData) for ds in datasets},
        previous=previous,
    )


def _references(ds: Dataset) -> Iterable[str]:
    for elem in ds.iterall():
        if elem.tag == 0x00081155 and elem.value:  # Referenced SOP Instance UID
            yield str(elem.value)


def verify(out: Path, original: Original) -> Verdict:
    """Leaks (jisr gate) and broken references in every file under `out`."""
    verdict = Verdict()
    outputs: list[Dataset] = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        try:
            outputs.append(pydicom.dcmread(path))
        except Exception:  # a peer may write anything
            verdict.unreadable += 1
    verdict.outputs = len(outputs)
    for ds in outputs:
        hits = scan(ds, original.identifiers)
        if hits:
            verdict.with_hits += 1
            verdict.hit_paths.update({f"{h.keyword or h.path} ({h.kind})" for h in hits})

    def broken(instance: int, why: str) -> None:
        verdict.problems[why] += 1
        bad.add(instance)

    bad: set[int] = set()
    by_uid: dict[str, int] = {}
    for k, ds in enumerate(outputs):
        uid = str(ds.get("SOPInstanceUID") or "")
        if uid:
            by_uid[uid] = int(ds.get("InstanceNumber") or -1 - k)
    for uid_name in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        values = collections.Counter(str(ds.get(uid_name) or "") for ds in outputs)
        if len(values) != 1 or "" in values:
            majority = values.most_common(1)[0][0] if values else ""
            for k, ds in enumerate(outputs):
                if str(ds.get(uid_name) or "") != majority or not majority:
                    broken(k, f"{uid_name} missing or not one value")
    for k, ds in enumerate(outputs):
        uid = str(ds.get("SOPInstanceUID") or "")
        number = int(ds.get("InstanceNumber") or -1 - k)
        if not uid:
            broken(k, "no SOPInstanceUID")
        meta = getattr(ds, "file_meta", None)
        if meta is None or str(meta.get("MediaStorageSOPInstanceUID") or "") != uid:
            broken(k, "file meta SOP Instance UID differs")
        refs = list(_references(ds))
        wanted = original.previous.get(number)
        if wanted is not None and not refs:
            broken(k, "reference dropped")
        for ref in refs:
            if ref not in by_uid:
                broken(k, "reference to no output instance")
            elif wanted is not None and by_uid[ref] != wanted:
                broken(k, "reference to the wrong instance")
        pixels = original.pixels.get(number)
        if pixels is None or "PixelData" not in ds or bytes(ds.PixelData) != pixels:
            broken(k, "pixel data missing or changed")
    if len(outputs) != len(original.pixels):
        verdict.problems[f"{len(outputs)} outputs for {len(original.pixels)} inputs"] += 1
        verdict.broken += abs(len(original.pixels) - len(outputs))
    verdict.broken += len(bad)
    return verdict


# ---------------------------------------------------------------- the table


@dataclass
class Row:
    tool: str
    instances: int
    times: list[float]
    mb: float
    verdict: Verdict | None
    floor: bool = False
    note: str = ""

    @property
    def seconds(self) -> float:
        """The median run."""
        return statistics.median(self.times)

    def per_s(self) -> float:
        return self.instances / self.seconds if self.seconds else 0.0

    def cells(self, orthanc_per_s: float | None) -> list[str]:
        v = self.verdict
        hits = "-" if v is None else f"{v.with_hits}/{v.outputs}"
        broken = "-" if v is None else str(v.broken)
        if self.floor:
            meets = "- (floor)"
        elif v is None or orthanc_per_s is None:
            meets = "-"
        else:
            ok = (
                v.with_hits == 0
                and v.broken == 0
                and v.unreadable == 0
                and v.outputs == self.instances
            )
            fast = self.per_s() >= orthanc_per_s
            meets = "yes" if ok and fast else "**no**"
        return [
            self.tool,
            str(self.instances),
            str(len(self.times)),
            f"{self.seconds:.2f}",
            f"{min(self.times):.2f}-{max(self.times):.2f}",
            f"{self.per_s():.1f}",
            f"{self.mb / self.seconds:.1f}" if self.seconds else "-",
            hits,
            broken,
            meets,
        ]


HEADER = [
    "tool",
    "instances",
    "runs",
    "median s",
    "min-max s",
    "instances/s (median)",
    "MB/s (median)",
    "identifier hits (instances)",
    "broken references",
    "meets target",
]


def _table(rows: Sequence[Row], orthanc_per_s: float | None) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(row.cells(orthanc_per_s)) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.deid", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--instances", type=int, default=300, help="instances in the CT series")
    parser.add_argument("--no-peers", action="store_true", help="skip dicognito and deid")
    parser.add_argument("--no-orthanc", action="store_true", help="skip Orthanc")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds of the in-process tools and Orthanc"
    )
    args = parser.parse_args(argv)
    began = time.perf_counter()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="jisr-bench-deid-"))
    try:
        source = tmp / "series"
        files = generate_series(source, args.instances)
        mb = sum(p.stat().st_size for p in files) / 1e6
        original = read_originals(files)
        print(f"series: {len(files)} instances, {mb:.1f} MB in {source}", file=sys.stderr)

        rows: list[Row] = []
        notes: list[str] = []

        def measured(tool: str, out: Path, times: list[float], *, floor: bool = False) -> None:
            verdict = None if floor else verify(out, original)
            rows.append(Row(tool, len(files), times, mb, verdict, floor=floor))
            if verdict is not None and (
                verdict.hit_paths or verdict.problems or verdict.unreadable
            ):
                top = ", ".join(f"{p} x{c}" for p, c in verdict.hit_paths.most_common(6))
                problems = ", ".join(f"{p} x{c}" for p, c in verdict.problems.most_common())
                notes.append(
                    f"{tool}: {verdict.outputs} outputs, {verdict.unreadable} unreadable; "
                    f"hits: {top or 'none'}; references: {problems or 'ok'}"
                )
            print(f"done: {tool} {statistics.median(times):.2f} s", file=sys.stderr)
            shutil.rmtree(out, ignore_errors=True)

        pydicom.dcmread(files[0])  # warm the imports and caches alike for every in-process row
        # The share path's pool lives as long as the server process: started before the time.
        deidentify_study(
            [files[0].read_bytes()] * PARALLEL_FROM,
            key=KEY,
            pseudonym=PSEUDONYM,
            options=OPTIONS,
            processes=POOL,
        )

        def in_process(
            work: Callable[[tuple[Path, Path]], None], processes: int
        ) -> Callable[[Path], float]:
            return lambda out: _run_in_process(work, files, out, processes)

        def share_path(processes: int) -> Callable[[Path], float]:
            return lambda out: _share_path(files, out, processes)

        pool = f"pool of {POOL} processes"
        contenders: list[tuple[str, Callable[[Path], float], bool]] = [
            ("floor: pydicom read-then-write, 1 process", in_process(_floor, 1), True),
            ("floor: pydicom read-then-write, Pool(2)", in_process(_floor, 2), True),
            ("jisr deidentify, 1 process", in_process(_jisr, 1), False),
            ("jisr deidentify + gate check, 1 process", in_process(_jisr_checked, 1), False),
            ("jisr deidentify + gate check, Pool(2)", in_process(_jisr_checked, 2), False),
            ("jisr share path (`deidentify_study`), 1 process", share_path(1), False),
            (f"jisr share path (`deidentify_study`), {pool}", share_path(POOL), False),
        ]
        orthanc_per_s: float | None = None
        with running_orthanc(files if not args.no_orthanc else [], tmp / "orthanc") as orthanc:
            if args.no_orthanc:
                orthanc.client = None
            elif orthanc.error:
                notes.append(f"orthanc: {orthanc.error}")
            if orthanc.client is not None:
                label = f"reference: Orthanc {orthanc.version} POST /studies/{{id}}/anonymize"
                contenders.append((label, orthanc.anonymize, False))
            times: list[list[float]] = [[] for _ in contenders]
            kept = [tmp / f"out-{n}" for n in range(len(contenders))]
            # Every tool once per round, the order turning each round, so that the load of
            # whatever else runs on the machine falls on all alike; outputs of round 1 are
            # checked, the others dropped.
            for turn in range(args.repeats):
                for k in range(len(contenders)):
                    n = (turn + k) % len(contenders)
                    label, run_tool, _ = contenders[n]
                    out = kept[n] if turn == 0 else tmp / f"scratch-{n}"
                    if label.startswith("reference: Orthanc"):
                        times[n].append(orthanc.anonymize(out if turn == 0 else None))
                    else:
                        times[n].append(run_tool(out))
                    if turn:
                        shutil.rmtree(out, ignore_errors=True)
                print(f"round {turn + 1} of {args.repeats} done", file=sys.stderr)
            for (label, _, floor), out, seconds in zip(contenders, kept, times, strict=True):
                measured(label, out, seconds, floor=floor)
                if label.startswith("reference: Orthanc"):
                    orthanc_per_s = len(files) / statistics.median(seconds)
                    notes.append(
                        f"orthanc: upload {orthanc.upload_s:.2f} s and archive download "
                        f"{orthanc.download_s:.2f} s, not timed"
                    )

        if not args.no_peers:
            python = peers_python()
            one = tmp / "one"
            one.mkdir()
            shutil.copy(files[0], one / files[0].name)
            for tool in ("dicognito", "deid"):
                startup, _ = _run_peer(python, tool, one, tmp / f"{tool}-one")
                shutil.rmtree(tmp / f"{tool}-one", ignore_errors=True)
                out = tmp / f"out-{tool}"
                took, error = _run_peer(python, tool, source, out)
                label = f"{tool} (CLI, whole run, once)"
                measured(label, out, [took])
                notes.append(
                    f"{tool}: the same command on 1 instance took {startup:.2f} s (start-up)"
                )
                if error:
                    notes.append(f"{tool}: {error}")

        print(_table(rows, orthanc_per_s))
        print()
        for note in notes:
            print(f"- {note}")
        load_after = os.getloadavg()
        print(
            f"\n{dt.date.today()} nproc {os.cpu_count()}, python {sys.version.split()[0]}, "
            f"pydicom {pydicom.__version__}, load {load_before[0]:.2f} -> {load_after[0]:.2f}, "
            f"total {time.perf_counter() - began:.0f} s"
        )
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
