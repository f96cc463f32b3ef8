"""Stores under test: a real Orthanc on loopback and a file store in a temporary folder.

`orthanc` starts Debian's Orthanc with its DICOMweb plugin once per module,
on free ports, with a temporary configuration, storage and index, and with
authentication on (as in production). `store` runs a test against both the
`FileStore` and an `OrthancStore`, each empty at the start of the test. When
Orthanc is not installed the Orthanc tests are skipped with a one-line reason,
unless `JISR_REQUIRE_SERVICES=1` (set by .ci/run), where they fail instead.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from jisr.topology.processes import free_port, stop
from services.imaging.stores import FileStore, OrthancStore, Store
from tests.conftest import missing_part

ORTHANC = Path(os.environ.get("JISR_ORTHANC", "/usr/sbin/Orthanc"))
DICOMWEB_PLUGIN = Path(
    os.environ.get("JISR_ORTHANC_DICOMWEB", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
)
START_DEADLINE = 30.0  # seconds; it answers in about 0.1 s here
STOP_DEADLINE = 15.0


@dataclass(frozen=True)
class OrthancServer:
    url: str
    username: str
    password: str
    process: subprocess.Popen[bytes]
    log: Path

    def store(self, *, timeout: float = 30.0) -> OrthancStore:
        return OrthancStore(self.url, self.username, self.password, timeout=timeout)

    def stop(self) -> None:
        stop(self.process, STOP_DEADLINE)


def require_orthanc() -> None:
    missing = [str(path) for path in (ORTHANC, DICOMWEB_PLUGIN) if not path.exists()]
    if not missing:
        return
    missing_part(
        f"Orthanc is not installed ({', '.join(missing)} missing): apt install orthanc orthanc-dicomweb"
    )


def orthanc_configuration(
    folder: Path, http_port: int, dicom_port: int, password: str
) -> dict[str, object]:
    """A hardened test configuration; see docs of Orthanc 1.10 and its DICOMweb plugin 1.7."""
    return {
        "Name": "jisr-test",
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "JISRTEST",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {"jisr-test": password},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            # "Full", not "MainDicomTags": with the latter, study metadata lacks SOP Class UID,
            # Rows, Columns and everything else a viewer needs (see stores/orthanc.py).
            "StudiesMetadata": "Full",
            "SeriesMetadata": "Full",
        },
        "LuaScripts": [],
        "ExecuteLuaEnabled": False,
        "RestApiWriteToFileSystemEnabled": False,
        "SaveJobs": False,
        "HttpDescribeErrors": True,
        "StorageCompression": False,
        "OverwriteInstances": False,
    }


@contextmanager
def running_orthanc(
    folder: Path, extra: dict[str, object] | None = None, dicom_port: int | None = None
) -> Iterator[OrthancServer]:
    """Start Orthanc in `folder`, wait until `GET /system` answers, stop it afterwards.

    `extra` is merged into the configuration; `dicom_port` fixes the DICOM port
    (peers that C-STORE to each other must know it in advance).
    """
    require_orthanc()
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for attempt in range(3):  # a free port can be taken between our check and Orthanc's bind
        server = _start(folder / f"run-{attempt}", extra or {}, dicom_port)
        try:
            _wait_until_ready(server)
        except RuntimeError as exc:
            server.stop()
            failures.append(str(exc))
            continue
        try:
            yield server
        finally:
            server.stop()
        return
    pytest.fail("Orthanc did not start:\n" + "\n".join(failures))


def _start(folder: Path, extra: dict[str, object], dicom_port: int | None) -> OrthancServer:
    folder.mkdir()
    dicom_port = dicom_port or free_port()
    http_port = free_port()
    while http_port == dicom_port:
        http_port = free_port()
    password = secrets.token_urlsafe(16)
    config = folder / "orthanc.json"
    config.write_text(
        json.dumps(orthanc_configuration(folder, http_port, dicom_port, password) | extra)
    )
    log = folder / "orthanc.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 (our own binary and configuration)
            [str(ORTHANC), str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return OrthancServer(f"http://127.0.0.1:{http_port}", "jisr-test", password, process, log)


def _wait_until_ready(server: OrthancServer) -> None:
    deadline = time.monotonic() + START_DEADLINE
    with httpx.Client(auth=(server.username, server.password), timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(f"{server.url}/system").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            try:  # the pause between polls doubles as a watch on the process
                server.process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            tail = server.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"Orthanc exited with {server.process.returncode}:\n{tail}")
    raise RuntimeError(f"Orthanc did not answer GET /system within {START_DEADLINE} s")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """One Orthanc per test module; `store` empties it before each test."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


async def empty(server: OrthancServer) -> None:
    async with httpx.AsyncClient(auth=(server.username, server.password), timeout=10.0) as client:
        patients = (await client.get(f"{server.url}/patients")).json()
        for patient in patients:
            (await client.delete(f"{server.url}/patients/{patient}")).raise_for_status()


@pytest.fixture
async def orthanc_store(orthanc: OrthancServer) -> AsyncIterator[OrthancStore]:
    """An `OrthancStore` on the module's Orthanc, emptied first."""
    await empty(orthanc)
    async with orthanc.store() as store:
        yield store


@pytest.fixture
async def file_store(tmp_path: Path) -> AsyncIterator[FileStore]:
    async with FileStore(tmp_path / "store") as store:
        yield store


@pytest.fixture(params=["files", "orthanc"])
def store(request: pytest.FixtureRequest) -> Store:
    """The same test against both stores, each empty."""
    found: Store = request.getfixturevalue(
        "file_store" if request.param == "files" else "orthanc_store"
    )
    return found


# C-STORE pick-up: an institution Orthanc that calls studies stable after 1 s, and a "modality"
# Orthanc that pushes to it over DICOM --------------------------------------------------------

MODALITY_NAME = "jisr"
"""The name under which the modality Orthanc knows the institution's Orthanc."""


@dataclass(frozen=True)
class DicomPeers:
    institution: OrthancServer
    modality: OrthancServer


@pytest.fixture(scope="module")
def dicom_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DicomPeers]:
    """The institution's Orthanc (AET JISRTEST, StableAge 1 s) and a modality that C-STOREs to it."""
    folder = tmp_path_factory.mktemp("dicom-peers")
    institution_port = free_port()
    institution_config = {
        "StableAge": 1,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
    }
    modality_config = {
        "Name": "jisr-test-modality",
        "DicomAet": "MODALITY",
        "DicomModalities": {MODALITY_NAME: ["JISRTEST", "127.0.0.1", institution_port]},
    }
    with (
        running_orthanc(
            folder / "institution", institution_config, institution_port
        ) as institution,
        running_orthanc(folder / "modality", modality_config, free_port()) as modality,
    ):
        yield DicomPeers(institution, modality)
