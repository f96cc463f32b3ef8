"""`jisr imaging upload PATH`: send a folder, or a CD's DICOMDIR, to the platform by STOW-RS.

Files are sent in batches (`multipart/related; type="application/dicom"`,
PS3.18 §10.5) with a bearer token from `/auth/token`. A DICOMDIR is read with
pydicom's `FileSet`; a record whose ReferencedFileID leaves the CD's root is
refused before anything is sent. Files without `DICM` after their preamble are
skipped. A progress bar goes to stderr and a summary to stdout; the exit code
is 1 when anything failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pydicom
from pydicom.fileset import FileSet

__all__ = ["Summary", "collect", "main"]

BATCH_FILES = 20
BATCH_BYTES = 64 * 1024**2
_ALREADY_STORED = 0xB006
_REASONS = {
    0x0110: "processing failure",
    0x0122: "not a DICOM instance",
    0xA700: "out of resources (too large or too deep)",
    0xA900: "data set does not match its SOP class (missing or invalid UID, other study)",
    0xC000: "cannot understand (cut short or malformed)",
}


class Refused(Exception):
    """The input cannot be uploaded as given (a DICOMDIR pointing outside its root)."""


@dataclass
class Summary:
    stored: int = 0
    already_stored: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def collect(path: Path) -> tuple[list[Path], list[str]]:
    """The files to send and those skipped (not DICOM); `Refused` for an unsafe DICOMDIR."""
    dicomdir = path if path.is_file() and path.name.upper() == "DICOMDIR" else path / "DICOMDIR"
    if dicomdir.is_file():
        candidates = list(_from_dicomdir(dicomdir))
    elif path.is_dir():
        candidates = sorted(p for p in path.rglob("*") if p.is_file())
    elif path.is_file():
        candidates = [path]
    else:
        raise Refused(f"no such file or folder: {path}")
    files: list[Path] = []
    skipped: list[Path] = []
    for candidate in candidates:
        with candidate.open("rb") as handle:
            head = handle.read(132)
        (files if head[128:132] == b"DICM" else skipped).append(candidate)
    return files, [str(p) for p in skipped]


def _from_dicomdir(dicomdir: Path) -> Iterator[Path]:
    root = dicomdir.parent.resolve()
    try:
        fileset = FileSet(pydicom.dcmread(dicomdir))
    except Exception as exc:  # pydicom refuses a traversing ReferencedFileID (and other damage)
        raise Refused(f"the DICOMDIR cannot be used: {exc}") from exc
    for instance in fileset:
        target = Path(instance.path).resolve()
        if not target.is_relative_to(root):
            raise Refused(f"the DICOMDIR refers to a file outside its folder: {instance.FileID}")
        yield target


def _batches(files: Sequence[Path]) -> Iterator[list[Path]]:
    batch: list[Path] = []
    size = 0
    for path in files:
        length = path.stat().st_size
        if batch and (len(batch) >= BATCH_FILES or size + length > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += length
    if batch:
        yield batch


def _body(batch: Sequence[Path]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = []
    for path in batch:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()]
        chunks += [path.read_bytes(), b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total if total else width
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} files")
    sys.stderr.flush()


def _record(summary: Summary, answer: dict[str, Any]) -> None:
    for item in answer.get("00081199", {}).get("Value", []):
        warning = item.get("00081196", {}).get("Value", [None])[0]
        if warning == _ALREADY_STORED:
            summary.already_stored += 1
        else:
            summary.stored += 1
    for item in answer.get("00081198", {}).get("Value", []):
        code = item.get("00081197", {}).get("Value", [0])[0]
        uid = (item.get("00081155", {}).get("Value") or ["an unidentified part"])[0]
        reason = _REASONS.get(code, "failed")
        summary.failed.append(f"{uid}: 0x{code:04X} {reason}")


def upload(client: httpx.Client, files: Sequence[Path], summary: Summary) -> None:
    done = 0
    _progress(done, len(files))
    for batch in _batches(files):
        body, content_type = _body(batch)
        answer = client.post(
            "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
        )
        if answer.status_code in (200, 202, 409) and "dicom+json" in answer.headers.get(
            "content-type", ""
        ):
            _record(summary, answer.json())
        else:
            detail = _detail(answer)
            summary.failed += [f"{path}: HTTP {answer.status_code} {detail}" for path in batch]
        done += len(batch)
        _progress(done, len(files))
    sys.stderr.write("\n")


def _detail(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("detail") or answer.json().get("title") or "")
    except ValueError:
        return answer.text[:200]


def main(args: argparse.Namespace) -> int:
    password = args.password or os.environ.get("JISR_UPLOAD_PASSWORD")
    if not password:
        print("give --password or set JISR_UPLOAD_PASSWORD", file=sys.stderr)
        return 2
    try:
        files, skipped = collect(Path(args.path))
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    summary = Summary(skipped=skipped)
    with httpx.Client(base_url=args.url.rstrip("/"), timeout=300) as client:
        token = client.post("/auth/token", data={"username": args.username, "password": password})
        if token.status_code != 200:
            print(f"could not sign in: HTTP {token.status_code} {_detail(token)}", file=sys.stderr)
            return 1
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        upload(client, files, summary)
    print(f"stored: {summary.stored}")
    print(f"already stored: {summary.already_stored}")
    print(f"skipped (not DICOM): {len(summary.skipped)}")
    print(f"failed: {len(summary.failed)}")
    reasons = Counter(summary.failed)
    for line in reasons:
        print(f"  {line}")
    return 1 if summary.failed else 0


def add_parser(sub: Any) -> None:
    """`jisr imaging upload` on the `jisr` command's subparsers."""
    imaging = sub.add_parser("imaging", help="imaging tools")
    commands = imaging.add_subparsers(dest="imaging_command", required=True)
    up = commands.add_parser("upload", help="upload a folder or a DICOMDIR by STOW-RS")
    up.add_argument("path")
    up.add_argument("--url", default="http://127.0.0.1:8000")
    up.add_argument("--username", required=True)
    up.add_argument("--password", help="or set JISR_UPLOAD_PASSWORD")
