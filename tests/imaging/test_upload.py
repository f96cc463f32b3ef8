"""`jisr imaging upload` against a real server: a folder, a DICOMDIR, and a DICOMDIR that escapes."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pydicom
import pytest
import uvicorn
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from jisr.app import create_app
from jisr.topology.processes import free_port
from shared.identity.models import Role
from shared.platform import Platform
from tests.factories import PASSWORD, Factory
from tests.imaging import factories as dicom


@pytest.fixture
async def server(platform: Platform) -> AsyncIterator[str]:
    """The test's platform served by uvicorn on a free loopback port, in a thread.

    The server gets its own `Platform` on the same settings: its database engine
    belongs to the server thread's event loop, and the app's lifespan disposes it.
    """
    port = free_port()
    app = create_app(Platform.from_settings(platform.settings))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    await asyncio.to_thread(thread.join, 10)


@pytest.fixture
async def username(factory: Factory) -> str:
    institution = await factory.institution()
    return (await factory.user(institution, Role.RADIOLOGIST)).username


async def upload(url: str, username: str, path: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jisr.cli",
        "imaging",
        "upload",
        str(path),
        "--url",
        url,
        "--username",
        username,
        env={**os.environ, "JISR_UPLOAD_PASSWORD": PASSWORD},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_folder_is_uploaded_with_progress_and_a_summary(
    server: str, username: str, tmp_path: Path
) -> None:
    folder = tmp_path / "cd"
    (folder / "sub").mkdir(parents=True)
    study = generate_uid()
    for n in range(3):
        (folder / "sub" / f"IM{n}").write_bytes(
            dicom.instance(study_uid=study, series_uid=generate_uid())
        )
    (folder / "README.TXT").write_text("not an image")
    code, out, err = await upload(server, username, folder)
    assert code == 0, out + err
    assert "stored: 3" in out and "failed: 0" in out and "skipped (not DICOM): 1" in out
    assert "3/3 files" in err
    code, out, _ = await upload(server, username, folder)
    assert code == 0 and "already stored: 3" in out


async def test_a_failed_instance_makes_the_exit_code_non_zero(
    server: str, username: str, tmp_path: Path
) -> None:
    (tmp_path / "cut.dcm").write_bytes(
        dicom.instance(study_uid=generate_uid(), series_uid=generate_uid())[:-30]
    )
    code, out, _ = await upload(server, username, tmp_path)
    assert code == 1
    assert "failed: 1" in out and "0xC000" in out


def write_dicomdir(folder: Path, count: int) -> Path:
    fileset = FileSet()
    study = generate_uid()
    staging = folder.parent / "staging"
    staging.mkdir()
    for n in range(count):
        source = staging / f"{n}.dcm"
        source.write_bytes(dicom.instance(study_uid=study, series_uid=generate_uid()))
        fileset.add(pydicom.dcmread(source))
    fileset.write(folder)
    fileset._stage["t"].cleanup()  # FileSet stages in a TemporaryDirectory it never closes
    return folder / "DICOMDIR"


async def test_a_dicomdir_is_uploaded(server: str, username: str, tmp_path: Path) -> None:
    dicomdir = write_dicomdir(tmp_path / "cd", 2)
    code, out, err = await upload(server, username, dicomdir)
    assert code == 0, out + err
    assert "stored: 2" in out


async def test_a_dicomdir_pointing_outside_its_root_is_refused(
    server: str, username: str, tmp_path: Path
) -> None:
    dicomdir = write_dicomdir(tmp_path / "cd", 1)
    ds = pydicom.dcmread(dicomdir)
    with pydicom.config.disable_value_validation():  # ".." is no valid CS: that is the point
        for record in ds.DirectoryRecordSequence:
            if "ReferencedFileID" in record:
                record.ReferencedFileID = ["..", "staging", "0.dcm"]
        ds.save_as(dicomdir)
    code, out, err = await upload(server, username, dicomdir)
    assert code == 1
    assert "refused" in err and "stored" not in out
