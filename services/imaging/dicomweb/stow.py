"""STOW-RS (PS3.18 §10.5): split a multipart/related body into parts on disk, check, store.

A request body is read chunk by chunk (`request.stream()`) and its parts are
spooled one after another into one temporary file under `data_dir/tmp/` whose
name comes from `tempfile`, never from the data (one file a request: creating
one took about 0.7 ms, 20 times a request). Each part is checked and stored a
window at a time (`store_parts`: a part is held in memory only while it is
checked and stored, and the store keeps windows while the next is checked).

When the request declares its length within `stow_max_bytes`, parts are
checked and stored while the rest of the body is still arriving (`arriving`):
the store no longer waits for the last byte. A body that then breaks (no
closing boundary, a malformed part header, the client gone) is answered 400 as
before and what this request had kept is removed again (`store_parts`), unless
another request has meanwhile been told that instance was already stored. A
body of undeclared length is counted against the limit as it arrives and
nothing is stored before its last byte, so a body over the limit (413) keeps
nothing.

Every part gets its own answer in the Store Instances Response (PS3.18
§10.5.3, PS3.4 B.2.3 for the codes):

    0x0122  Refused: SOP Class not supported - the part is not a DICOM instance
            (another media type, or no `DICM` after the preamble)
    0xC000  Error: Cannot understand - a DICOM file cut short or malformed
    0xA900  Error: Data set does not match SOP Class - a missing or invalid UID
            (PS3.5 §9.1), or an instance of another study than the URL names
    0xA700  Refused: Out of resources - past a parsing bound (sequence depth,
            decoded pixel size, parsing time)
    0x0110  Processing failure - the store could not keep it
    0xB006  Warning (WarningReason): the instance was already stored; the copy
            sent is discarded and the first one kept

The checks here come before the store's own (`stores.part10`), which the store
applies again: they bound what pydicom is asked to parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import struct
import tempfile
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from services.imaging.stores import RejectedByStore, Store, StoredInstance, StoreError, part10
from shared.problems import BadRequest, JisrError, PayloadTooLarge

__all__ = [
    "CANNOT_UNDERSTAND",
    "DATASET_MISMATCH",
    "DICOM",
    "DICOM_JSON",
    "NOT_DICOM",
    "OUT_OF_RESOURCES",
    "PROCESSING_FAILURE",
    "WARNING_ALREADY_STORED",
    "Outcome",
    "Part",
    "Refused",
    "UnsupportedMediaType",
    "arriving",
    "boundary_of",
    "checked_part",
    "response_body",
    "spool",
    "store_parts",
]

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"

PROCESSING_FAILURE = 0x0110
NOT_DICOM = 0x0122
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
WARNING_ALREADY_STORED = 0xB006

MAX_SEQUENCE_DEPTH = 32
MAX_DECODED_PIXEL_BYTES = 2 * 1024**3
PARSE_TIMEOUT_S = 30.0
WINDOW = 4
"""Checked parts stored together (see `store_parts`)."""
IN_FLIGHT = 4
"""Windows the store keeps at once (see `store_parts`). Orthanc stores the instances of one
request one after another; four requests at once kept it busy where two left it waiting
(200 CT instances in 10 requests: +10.5 % over Orthanc direct with 2 windows of 8, +5.7 %
with 4 of 4; bench/README.md)."""
WINDOW_BYTES = 32 * 1024**2
"""A window closes at this size too: each is one request the store holds in memory, so a
request holds at most `(IN_FLIGHT + 1) * WINDOW_BYTES` of parts."""
_MAX_HEADER_BYTES = 16 * 1024
_CHUNK_TAIL = 64 * 1024

log = logging.getLogger(__name__)

_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{1,70}$")  # RFC 2046 §5.1.1


class UnsupportedMediaType(JisrError):
    status, slug = 415, "unsupported_media_type"


class Refused(Exception):
    """One part refused, with its PS3.18 failure reason and a sentence for the logs."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class Part:
    """One spooled part: where it lies in the spool file, and its declared media type (the
    root type when absent)."""

    path: Path
    media_type: str
    offset: int = 0
    size: int = 0

    def read(self) -> bytes:
        """Blocking: run it in a thread."""
        with self.path.open("rb") as spooled:
            spooled.seek(self.offset)
            return spooled.read(self.size)


Failure = tuple[str, str, int, str]
"""(SOP Class UID, SOP Instance UID, failure reason, sentence); UIDs empty when unknown."""


@dataclass(slots=True)
class Outcome:
    """What became of the parts of one request."""

    stored: list[StoredInstance] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    """(SOP Class UID, SOP Instance UID, failure reason, sentence); UIDs empty when unknown."""


# -- the request's media type ---------------------------------------------------------------


def _parameters(content_type: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = content_type.partition(";")
    params: dict[str, str] = {}
    for match in re.finditer(r'\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)\s*;?', rest):
        value = match.group(2).strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1]
        params[match.group(1).lower()] = value
    return kind.strip().lower(), params


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of `multipart/related; type="application/dicom"; boundary=...` (PS3.18 §8.6.1.2)."""
    kind, params = _parameters(content_type or "")
    if kind != "multipart/related" or params.get("type", DICOM).lower() != DICOM:
        raise UnsupportedMediaType(
            'STOW-RS takes multipart/related; type="application/dicom" (PS3.18 §10.5.1.2)'
        )
    boundary = params.get("boundary", "")
    if not _BOUNDARY.fullmatch(boundary):
        raise BadRequest("the multipart/related Content-Type has no valid boundary parameter")
    return boundary.encode("ascii")


# -- the body, part by part ------------------------------------------------------------------


async def spool(
    chunks: AsyncIterator[bytes], boundary: bytes, folder: Path, *, max_bytes: int
) -> AsyncGenerator[Part, None]:
    """Split a multipart/related body (RFC 2046 §5.1) into one file in `folder`, streaming;
    each part is yielded once its last byte is on disk.

    `PayloadTooLarge` once more than `max_bytes` arrive; `BadRequest` for a body
    that is not a complete multipart body, after the parts before the break. The
    caller removes `folder`.
    """
    delimiter = b"\r\n--" + boundary
    buffer = bytearray(b"\r\n")  # the first delimiter may open the body with no CRLF before it
    part = Part(Path(), DICOM)  # the part being received, once state is "body"
    state = "preamble"
    handle, name = tempfile.mkstemp(dir=folder, prefix="body-", suffix=".bin")
    path = Path(name)
    written = 0
    received = 0
    with os.fdopen(handle, "wb") as out:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLarge(f"the request body exceeds {max_bytes} bytes")
            buffer += chunk
            while True:
                if state in ("preamble", "body"):
                    at = buffer.find(delimiter)
                    if at < 0:
                        keep = len(delimiter) - 1
                        if len(buffer) > keep:
                            if state == "body":
                                written += _write(out, buffer, len(buffer) - keep)
                            elif len(buffer) > _CHUNK_TAIL:
                                raise BadRequest("no multipart boundary in the body")
                            del buffer[: len(buffer) - keep]
                        break
                    if state == "body":
                        written += _write(out, buffer, at)
                        part.size = written - part.offset
                        out.flush()  # read back by offset from another file object
                        yield part
                    del buffer[: at + len(delimiter)]
                    state = "delimiter"
                if state == "delimiter":
                    end = buffer.find(b"\r\n")
                    if buffer.startswith(b"--"):
                        state = "done"
                        break
                    if end < 0:
                        if len(buffer) > _MAX_HEADER_BYTES:
                            raise BadRequest("a multipart boundary line is too long")
                        break
                    if buffer[:end].strip(b" \t"):
                        raise BadRequest("text after a multipart boundary")
                    del buffer[: end + 2]
                    state = "headers"
                if state == "headers":
                    if buffer.startswith(b"\r\n"):
                        headers, skip = b"", 2
                    else:
                        end = buffer.find(b"\r\n\r\n")
                        if end < 0:
                            if len(buffer) > _MAX_HEADER_BYTES:
                                raise BadRequest("the headers of a part are too long")
                            break
                        headers, skip = bytes(buffer[:end]), end + 4
                    del buffer[:skip]
                    part = Part(path, _media_type(headers), offset=written)
                    state = "body"
                if state == "done":
                    break
            if state == "done":
                break
    if state != "done":
        raise BadRequest("the multipart body ends before its closing boundary")


async def arriving(parts: AsyncGenerator[Part, None], *, whole_first: bool) -> AsyncIterator[Part]:
    """`parts` received in a task of their own, so that the body keeps arriving while the
    parts before are checked and stored; with `whole_first`, none before the last.

    The receiving task's error (`BadRequest`, `PayloadTooLarge`, the client gone)
    is raised where the next part would have come.
    """
    queue: asyncio.Queue[Part | BaseException | None] = asyncio.Queue()

    async def receive() -> None:
        held: list[Part] = []
        try:
            async with contextlib.aclosing(parts):
                async for part in parts:
                    if whole_first:
                        held.append(part)
                    else:
                        queue.put_nowait(part)
        except Exception as exc:  # handed to the reader, who raises it
            queue.put_nowait(exc)
            return
        for part in held:
            queue.put_nowait(part)
        queue.put_nowait(None)

    task = asyncio.create_task(receive())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def _write(out: BinaryIO, buffer: bytearray, end: int) -> int:
    """`buffer[:end]` written without copying it first (a slice of a bytearray is a copy)."""
    with memoryview(buffer) as view:
        return out.write(view[:end])


def _media_type(headers: bytes) -> str:
    for line in headers.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            return _parameters(value)[0]
    return DICOM


# -- one part -------------------------------------------------------------------------------


def check(data: bytes) -> part10.Part10:
    """The bounds on what is parsed, then the store's own checks; `Refused` says why not.

    Blocking: run it in a thread.
    """
    if len(data) < part10.PREAMBLE_LENGTH + 4 or data[128:132] != b"DICM":
        raise Refused(NOT_DICOM, "not a DICOM Part 10 file (no 'DICM' after the preamble)")
    syntax, start = _file_meta(data)
    if syntax != DeflatedExplicitVRLittleEndian:  # a deflated data set is bounded by zlib
        try:
            implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
        except ValueError as exc:
            raise Refused(CANNOT_UNDERSTAND, f"unknown transfer syntax {syntax!r:.80}") from exc
        _walk(data, start, implicit=implicit, little=little)
    try:
        part = part10.read(data)
    except RejectedByStore as exc:
        code = DATASET_MISMATCH if "UID" in exc.reason else CANNOT_UNDERSTAND
        raise Refused(code, exc.reason) from exc
    _check_pixel_size(part)
    return part


def _file_meta(data: bytes) -> tuple[UID, int]:
    """The transfer syntax and where the data set starts; group 0002 is explicit VR LE."""
    pos, syntax = 132, ""
    while pos + 8 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 0x0002:
        tag = struct.unpack_from("<HH", data, pos)
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<L", data, pos + 8)
            pos += 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8
        if length == _UNDEFINED or pos + length > len(data):
            raise Refused(CANNOT_UNDERSTAND, "the file meta information is cut short")
        if tag == (0x0002, 0x0010):
            syntax = data[pos : pos + length].decode("ascii", "replace").strip("\0 ")
        pos += length
    if not syntax:
        raise Refused(CANNOT_UNDERSTAND, "the file meta information has no Transfer Syntax UID")
    return UID(syntax, validation_mode=pydicom.config.IGNORE), pos


def _walk(data: bytes, pos: int, *, implicit: bool, little: bool) -> None:
    """Walk every element without recursion: lengths within the file, sequences nested at
    most `MAX_SEQUENCE_DEPTH` deep (PS3.5 §7.5). Values are not decoded."""
    order = "<" if little else ">"
    size = len(data)
    # (kind, end or None when of undefined length, implicit VR inside)
    stack: list[tuple[str, int | None, bool]] = []
    depth = 0
    while True:
        while stack and stack[-1][1] is not None and pos >= (stack[-1][1] or 0):
            if pos > (stack[-1][1] or 0):
                raise Refused(CANNOT_UNDERSTAND, "an item overruns its sequence's length")
            depth -= stack.pop()[0] == "seq"
        if pos >= size:
            break
        if pos + 8 > size:
            raise Refused(CANNOT_UNDERSTAND, "the file is cut short inside an element header")
        inner_implicit = stack[-1][2] if stack else implicit
        group, element = struct.unpack_from(order + "HH", data, pos)
        tag = group << 16 | element
        if group == 0xFFFE:
            (length,) = struct.unpack_from(order + "L", data, pos + 4)
            pos += 8
            parent = stack[-1][0] if stack else ""
            if tag == _ITEM and parent == "pixels":
                if length == _UNDEFINED or pos + length > size:
                    raise Refused(CANNOT_UNDERSTAND, "a pixel data fragment is cut short")
                pos += length
            elif tag == _ITEM and parent == "seq":
                if length != _UNDEFINED and pos + length > size:
                    raise Refused(CANNOT_UNDERSTAND, "a sequence item is cut short")
                stack.append(
                    ("item", None if length == _UNDEFINED else pos + length, inner_implicit)
                )
            elif tag == _ITEM_END and parent == "item" and stack[-1][1] is None:
                stack.pop()
            elif tag == _SEQUENCE_END and parent in ("seq", "pixels") and stack[-1][1] is None:
                depth -= stack.pop()[0] == "seq"
            else:
                raise Refused(CANNOT_UNDERSTAND, f"a misplaced delimiter ({tag:08X})")
            continue
        vr: bytes | None = None
        if inner_implicit:
            (length,) = struct.unpack_from(order + "L", data, pos + 4)
            pos += 8
        else:
            vr = data[pos + 4 : pos + 6]
            if vr in _LONG_VRS:
                if pos + 12 > size:
                    raise Refused(
                        CANNOT_UNDERSTAND, "the file is cut short inside an element header"
                    )
                (length,) = struct.unpack_from(order + "L", data, pos + 8)
                pos += 12
            else:
                (length,) = struct.unpack_from(order + "H", data, pos + 6)
                pos += 8
        if length == _UNDEFINED:
            if tag == _PIXEL_DATA:
                stack.append(("pixels", None, inner_implicit))
                continue
            # SQ, or UN of undefined length: implicit VR little endian inside (PS3.5 §6.2.2).
            stack.append(("seq", None, inner_implicit or vr == b"UN"))
            depth += 1
        elif pos + length > size:
            raise Refused(
                CANNOT_UNDERSTAND,
                f"the file is cut short: element ({group:04X},{element:04X}) declares"
                f" {length} bytes and {size - pos} remain",
            )
        elif vr == b"SQ" or (vr is None and _is_sequence(tag)):
            stack.append(("seq", pos + length, inner_implicit))
            depth += 1
        else:
            pos += length
        if depth > MAX_SEQUENCE_DEPTH:
            raise Refused(
                OUT_OF_RESOURCES, f"sequences are nested more than {MAX_SEQUENCE_DEPTH} deep"
            )


def _is_sequence(tag: int) -> bool:
    try:
        return bool(dictionary_VR(tag) == "SQ")
    except KeyError:
        return False


def _check_pixel_size(part: part10.Part10) -> None:
    if part.pixel_bytes is None:
        raise Refused(CANNOT_UNDERSTAND, "unreadable image dimensions")
    if part.pixel_bytes > MAX_DECODED_PIXEL_BYTES:
        raise Refused(
            OUT_OF_RESOURCES,
            f"decoded pixel data would take {part.pixel_bytes} bytes,"
            f" over {MAX_DECODED_PIXEL_BYTES}",
        )


async def checked_part(part: Part, *, study_uid: str | None = None) -> part10.Part10 | Failure:
    """One spooled part read and checked (in a thread, within `PARSE_TIMEOUT_S`), or why not.

    The spool file goes with the request's folder (the caller removes it).
    """
    if part.media_type != DICOM:
        return ("", "", NOT_DICOM, f"a part of type {part.media_type!r:.60}")
    try:
        checked = await asyncio.wait_for(asyncio.to_thread(_read_and_check, part), PARSE_TIMEOUT_S)
    except Refused as exc:
        return ("", "", exc.code, exc.reason)
    except TimeoutError:
        return ("", "", OUT_OF_RESOURCES, "parsing took too long")
    if study_uid is not None and checked.study_uid != study_uid:
        return (
            checked.sop_class_uid,
            checked.sop_instance_uid,
            DATASET_MISMATCH,
            "an instance of another study",
        )
    return checked


def _read_and_check(part: Part) -> part10.Part10:
    """One trip to a thread for both: each trip wakes the event loop once more."""
    return check(part.read())


def _answer(part: part10.Part10, result: StoredInstance | StoreError) -> StoredInstance | Failure:
    if isinstance(result, StoredInstance):
        return result
    uids = (part.sop_class_uid, part.sop_instance_uid)
    if isinstance(result, RejectedByStore):
        return (*uids, CANNOT_UNDERSTAND, result.reason)
    return (*uids, PROCESSING_FAILURE, str(result))


class _Kept:
    """An instance a request has stored new while its body may still break (see `_kept`)."""

    __slots__ = ("adopted",)

    def __init__(self) -> None:
        self.adopted = False


_undoing: set[asyncio.Future[None]] = set()
"""Undo tasks still running: the event loop keeps only weak references to tasks."""
_kept: dict[tuple[str, str], _Kept] = {}
"""(store address, SOP Instance UID) -> what a request in this process stored new and would
remove if its body broke; another request told that instance was already stored adopts it,
and it is kept."""


async def _put(
    store: Store,
    batch: list[tuple[int, part10.Part10]],
    answers: list[StoredInstance | Failure],
    mine: dict[str, _Kept],
) -> None:
    results = await store.put_checked([part for _, part in batch])
    for (i, part), result in zip(batch, results, strict=True):
        answers[i] = answer = _answer(part, result)
        if not isinstance(answer, StoredInstance):
            continue
        key = (store.address, answer.sop_instance_uid)
        if not answer.already_stored:
            mine[answer.sop_instance_uid] = _kept[key] = _Kept()
        elif (kept := _kept.get(key)) is not None and kept is not mine.get(key[1]):
            kept.adopted = True


async def store_parts(
    store: Store,
    parts: AsyncIterable[Part],
    outcome: Outcome,
    *,
    study_uid: str | None = None,
    window: int = WINDOW,
    in_flight: int = IN_FLIGHT,
    window_bytes: int = WINDOW_BYTES,
) -> None:
    """Check every part as it comes and put the good ones in `store`; answers go into
    `outcome` in the parts' order.

    Checked parts go to the store `window` at a time (fewer once they reach
    `window_bytes`), up to `in_flight` windows at once, while this process checks
    the next ones: the store (its own process, for Orthanc) and the checks work at
    the same time, with at most `in_flight + 1` windows in memory. A store with
    nothing to do gets what is checked at once, however few, rather than wait for
    a full window (each request would otherwise begin with the store idle while a
    whole window is checked). A window holding a SOP Instance UID that a window in
    flight holds waits for that one, so the first copy sent is the one kept.

    When `parts` raises (the body broke after some parts were stored), the
    windows in flight are let finish and every instance this call stored new is
    removed again, but those another request has since been told are stored;
    then the error goes on.
    """
    answers: list[StoredInstance | Failure] = []
    storing: dict[asyncio.Task[None], frozenset[str]] = {}
    mine: dict[str, _Kept] = {}

    def reap() -> None:
        for task in [task for task in storing if task.done()]:
            del storing[task]
            task.result()

    async def settle(*, until: int, overlapping: frozenset[str] = frozenset()) -> None:
        while len(storing) > until or any(overlapping & uids for uids in storing.values()):
            await asyncio.wait(storing, return_when=asyncio.FIRST_COMPLETED)
            reap()

    async def send(batch: list[tuple[int, part10.Part10]]) -> None:
        uids = frozenset(part.sop_instance_uid for _, part in batch)
        await settle(until=in_flight - 1, overlapping=uids)
        storing[asyncio.create_task(_put(store, batch, answers, mine))] = uids

    try:
        batch: list[tuple[int, part10.Part10]] = []
        async for part in parts:
            answers.append(("", "", PROCESSING_FAILURE, "not stored"))
            found = await checked_part(part, study_uid=study_uid)
            if isinstance(found, part10.Part10):
                batch.append((len(answers) - 1, found))
            else:
                answers[-1] = found
            reap()
            full = len(batch) == window or sum(len(p.data) for _, p in batch) >= window_bytes
            if full or (batch and not storing):
                await send(batch)
                batch = []
        if batch:
            await send(batch)
        await settle(until=0)
    except BaseException:
        undoing = asyncio.ensure_future(_undo(store, storing, mine))
        _undoing.add(undoing)  # shielded: if this task is cancelled, the undo goes on
        undoing.add_done_callback(_undoing.discard)
        await asyncio.shield(undoing)
        raise
    finally:
        for uid in mine:
            _kept.pop((store.address, uid), None)
    for answer in answers:
        if isinstance(answer, StoredInstance):
            outcome.stored.append(answer)
        else:
            outcome.failed.append(answer)


async def _undo(
    store: Store, storing: dict[asyncio.Task[None], frozenset[str]], mine: dict[str, _Kept]
) -> None:
    """Let the windows in flight finish (what they store is known only then), then remove
    what this request stored new and nobody adopted."""
    if storing:
        await asyncio.wait(storing)
    for task in storing:
        if not task.cancelled():
            task.exception()  # retrieved: the error that brought us here is the one raised
    doomed = [uid for uid, kept in mine.items() if not kept.adopted]
    if doomed:
        try:
            await store.remove(doomed)
        except StoreError as exc:
            log.warning(
                "a broken STOW-RS body left %d instances in %s: %s", len(doomed), store.address, exc
            )


# -- the answer -----------------------------------------------------------------------------


def _uid(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def response_body(outcome: Outcome, base_url: str) -> dict[str, Any]:
    """The Store Instances Response Module (PS3.18 Table 10.5.3-3) in the DICOM JSON model."""
    body: dict[str, Any] = {}
    studies = {stored.study_uid for stored in outcome.stored}
    if len(studies) == 1:
        body["00081190"] = {"vr": "UR", "Value": [f"{base_url}/studies/{studies.pop()}"]}
    if outcome.failed:
        body["00081198"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": _uid(sop_class),
                    "00081155": _uid(sop_instance),
                    "00081197": {"vr": "US", "Value": [code]},
                }
                for sop_class, sop_instance, code, _ in outcome.failed
            ],
        }
    if outcome.stored:
        items = []
        for stored in outcome.stored:
            item: dict[str, Any] = {
                "00081150": _uid(stored.sop_class_uid),
                "00081155": _uid(stored.sop_instance_uid),
                "00081190": {
                    "vr": "UR",
                    "Value": [
                        f"{base_url}/studies/{stored.study_uid}/series/{stored.series_uid}"
                        f"/instances/{stored.sop_instance_uid}"
                    ],
                },
            }
            if stored.already_stored:
                item["00081196"] = {"vr": "US", "Value": [WARNING_ALREADY_STORED]}
            items.append(item)
        body["00081199"] = {"vr": "SQ", "Value": items}
    return body


def status_code(outcome: Outcome) -> int:
    """200 all stored, 202 some failed or warned, 409 none stored (PS3.18 §10.5.3)."""
    if not outcome.stored:
        return 409
    if outcome.failed or any(stored.already_stored for stored in outcome.stored):
        return 202
    return 200


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
