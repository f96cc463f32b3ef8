"""Real peers for teleconsult tests: a served app, signalling clients and aiortc peers.

- `serve(app)`: uvicorn on a loopback port bound before it starts (no polling).
- `join_token(...)`: a join token minted with the platform's keyring, as
  `POST /api/teleconsults/{id}/join` would.
- `SignallingClient`: a `websockets` client that queues what the server sends;
  `next()` and `expect(type)` wait with a timeout, never sleep.
- `AiortcPeer`: an RTCPeerConnection with no ICE servers (never a public
  default), a generated video track and a data channel, driven by a
  `SignallingClient`; `loopback_candidates()` makes aioice gather 127.0.0.1.

Reusable by the recorder, TURN and bench tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import numpy as np
import uvicorn
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import VideoStreamTrack
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.teleconsult import tokens
from services.teleconsult.signalling.hooks import Hooks
from services.teleconsult.tokens import JoinGrant, RoomRole
from shared.platform import Platform

WAIT_S = 10.0
CLOSE_S = 10.0
"""How long closing one aiortc connection may take in a teardown."""


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the test, not SIGINT, stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1; yields its base URL (`http://127.0.0.1:<port>`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, lifespan="on", ws="websockets-sansio", log_level="warning"
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT_S)
        sock.close()


async def _settings_ice_servers(platform: Platform, grant: JoinGrant) -> list[dict[str, Any]]:
    stun = platform.settings.stun_urls
    return [{"urls": list(stun)}] if stun else []


async def _admit_anyone(platform: Platform, grant: JoinGrant) -> None:
    """The join token alone decides: rooms with no session row behind them."""


async def _record_nothing(platform: Platform, grant: JoinGrant, *args: str) -> None:
    """Rooms with no session row: nothing to record."""


def standalone_hooks(**overrides: Any) -> Hooks:
    """Hooks for signalling tested alone (no session rows): STUN from settings, the token decides."""
    return Hooks(
        **{
            "ice_servers": _settings_ice_servers,
            "check_entry": _admit_anyone,
            "end_session": _record_nothing,
            "peer_left": _record_nothing,
            **overrides,
        }
    )


def join_token(
    platform: Platform,
    session_id: int,
    peer: str,
    *,
    role: RoomRole = RoomRole.PARTICIPANT,
    name: str = "",
    institution: str = "CHU Oran",
    kind: str = "specialist",
    ttl_s: int | None = None,
    lang: str = "en",
) -> str:
    grant = JoinGrant(
        session_id=session_id,
        peer=peer,
        name=name or peer,
        institution=institution,
        role=role,
        kind=kind,
        lang=lang,
    )
    ttl = platform.settings.join_token_ttl_s if ttl_s is None else ttl_s
    token, _ = tokens.issue(platform.keyring, platform.settings, grant, ttl_s=ttl)
    return token


def socket_url(base: str, session_id: int, token: str) -> str:
    return base.replace("http", "ws", 1) + f"/ws/teleconsults/{session_id}?token={token}"


@dataclass
class Inbox:
    """Messages as they arrive; `next()` and `expect()` wait with a timeout."""

    messages: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    held: list[dict[str, Any]] = field(default_factory=list)

    async def next(self, within: float = WAIT_S) -> dict[str, Any]:
        """The next message not yet taken (held ones first)."""
        if self.held:
            return self.held.pop(0)
        return await asyncio.wait_for(self.messages.get(), within)

    async def expect(self, kind: str, within: float = WAIT_S, **fields: Any) -> dict[str, Any]:
        """The first message of type `kind` (with `fields`), holding the others for `next()`."""
        for i, message in enumerate(self.held):
            if message.get("type") == kind and all(message.get(k) == v for k, v in fields.items()):
                return self.held.pop(i)
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind} {fields} within {within}s; held {self.held}")
            try:
                message = await asyncio.wait_for(self.messages.get(), left)
            except TimeoutError:
                raise TimeoutError(
                    f"no {kind} {fields} within {within}s; held {self.held}"
                ) from None
            if message.get("type") == kind and all(message.get(k) == v for k, v in fields.items()):
                return message
            self.held.append(message)

    def nothing_pending(self) -> bool:
        return not self.held and self.messages.empty()


@dataclass
class SignallingClient(Inbox):
    """One signalling socket; messages are queued as they arrive."""

    ws: ClientConnection | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    close_reason: str = ""
    _reader: asyncio.Task[None] | None = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls, base: str, session_id: int, token: str, *, origin: str | None = None
    ) -> AsyncIterator[SignallingClient]:
        headers = {"Origin": origin} if origin else None
        async with connect(
            socket_url(base, session_id, token),
            additional_headers=headers,
            max_size=None,
            open_timeout=WAIT_S,
        ) as ws:
            client = cls(ws=ws)
            client._reader = asyncio.create_task(client._read())
            try:
                yield client
            finally:
                client._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await client._reader

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                await self.messages.put(json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            if self.ws.close_code is not None:
                self.close_code = self.ws.close_code
                self.close_reason = self.ws.close_reason or ""
            self.closed.set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(message))

    async def send_raw(self, raw: str | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(raw)

    async def wait_closed(self, within: float = WAIT_S) -> int | None:
        await asyncio.wait_for(self.closed.wait(), within)
        return self.close_code


@contextlib.contextmanager
def loopback_candidates() -> Iterator[None]:
    """aioice skips 127.0.0.1 when gathering: make it gather only that (hermetic tests)."""
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


def split_candidates(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """An SDP without its `a=candidate` lines, and those as RTCIceCandidateInit dictionaries."""
    lines = sdp.splitlines()
    mids: list[str | None] = []
    for line in lines:
        if line.startswith("m="):
            mids.append(None)
        elif line.startswith("a=mid:") and mids:
            mids[-1] = line[len("a=mid:") :]
    kept: list[str] = []
    candidates: list[dict[str, Any]] = []
    index = -1
    for line in lines:
        index += line.startswith("m=")
        if line.startswith("a=candidate:"):
            candidates.append(
                {"candidate": line[2:], "sdpMid": mids[index], "sdpMLineIndex": index}
            )
        elif line != "a=end-of-candidates":
            kept.append(line)
    return "\r\n".join(kept) + "\r\n", candidates


class PatternTrack(VideoStreamTrack):
    """Generated 320×240 frames whose colour names the sender, so a receiver can tell whose they are."""

    def __init__(self, shade: int) -> None:
        super().__init__()
        self.shade = shade

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = np.full((240, 320, 3), self.shade, dtype=np.uint8)
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class AiortcPeer(Inbox):
    """An aiortc endpoint in a room: offers to the peers it finds, answers the ones that offer.

    Offers carry every candidate inside the SDP (aiortc gathers before it
    returns the local description, and does not trickle). Trickled
    `candidate` messages from browsers are added as they come.
    """

    def __init__(
        self,
        client: SignallingClient,
        *,
        shade: int = 200,
        ice_servers: list[RTCIceServer] | None = None,
        trickle: bool = False,
    ) -> None:
        super().__init__()
        self.client = client
        self.trickle = trickle
        """Send candidates as `candidate` messages after an SDP without them, as browsers do."""
        self.shade = shade
        self.ice_servers = ice_servers if ice_servers is not None else []
        self.peer_id = ""
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.frames: dict[str, asyncio.Queue[VideoFrame]] = {}
        self.channel_messages: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.channels: dict[str, RTCDataChannel] = {}
        self.connected: dict[str, asyncio.Event] = {}
        self.opened: dict[str, asyncio.Event] = {}
        self.welcome: dict[str, Any] = {}
        self.trickled: list[dict[str, Any]] = []
        self.candidates_ended: dict[str, asyncio.Event] = {}
        """Set when `other` said it has no more candidates (a null `candidate`)."""
        self.descriptions: list[dict[str, Any]] = []
        """Offers and answers as received."""
        self._task: asyncio.Task[None] | None = None
        self._sinks: list[asyncio.Task[None]] = []

    def _pc(self, other: str) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers))
        self.pcs[other] = pc
        # A new connection to a peer seen before (it reconnected): forget the old one's
        # frames and state, but keep what someone is already waiting on.
        frames = self.frames.setdefault(other, asyncio.Queue())
        while not frames.empty():
            frames.get_nowait()
        if self.connected.get(other, asyncio.Event()).is_set() or other not in self.connected:
            self.connected[other] = asyncio.Event()
        if self.opened.get(other, asyncio.Event()).is_set() or other not in self.opened:
            self.opened[other] = asyncio.Event()
        pc.addTrack(PatternTrack(self.shade))

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected":
                self.connected[other].set()

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._sinks.append(asyncio.create_task(self._drain(other, track)))

        @pc.on("datachannel")
        def _channel(channel: RTCDataChannel) -> None:
            self._watch(other, channel)

        return pc

    def _watch(self, other: str, channel: RTCDataChannel) -> None:
        self.channels[other] = channel
        opened = self.opened.setdefault(other, asyncio.Event())
        if channel.readyState == "open":
            opened.set()
        channel.on("open", opened.set)

        @channel.on("message")
        def _message(message: str | bytes) -> None:
            text = message if isinstance(message, str) else message.decode()
            self.channel_messages.put_nowait((other, text))

    async def _drain(self, other: str, track: MediaStreamTrack) -> None:
        queue = self.frames[other]
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                if queue.qsize() < 30:
                    queue.put_nowait(frame)  # type: ignore[arg-type]

    async def start(self) -> dict[str, Any]:
        """Read `welcome`, offer to every peer in it, then serve signalling in the background."""
        self.welcome = await self.client.expect("welcome")
        self.peer_id = self.welcome["peer_id"]
        if not self.welcome["waiting"]:
            for peer in self.welcome["peers"]:
                if not peer["waiting"]:
                    await self.offer(peer["peer_id"])
        self._task = asyncio.create_task(self._serve())
        return self.welcome

    async def offer(self, other: str) -> None:
        pc = self._pc(other)
        channel = pc.createDataChannel("chat")
        self._watch(other, channel)
        await pc.setLocalDescription(await pc.createOffer())
        await self._describe("offer", other, pc)

    async def _describe(self, kind: str, other: str, pc: RTCPeerConnection) -> None:
        """Send the local description: whole, or (trickling) bare and then its candidates one by one."""
        sdp = pc.localDescription.sdp
        if not self.trickle:
            await self.client.send({"type": kind, "to": other, "sdp": sdp})
            return
        bare, candidates = split_candidates(sdp)
        await self.client.send({"type": kind, "to": other, "sdp": bare})
        for candidate in candidates:
            await self.client.send({"type": "candidate", "to": other, "candidate": candidate})
        await self.client.send({"type": "candidate", "to": other, "candidate": None})

    async def _serve(self) -> None:
        while True:
            message = await self.client.next(within=3600)
            kind = message.get("type")
            if kind == "admitted" and message.get("peer_id") == self.peer_id:
                for peer in message.get("peers", []):
                    if not peer["waiting"]:
                        await self.offer(peer["peer_id"])
                await self.messages.put(message)
            elif kind == "peer-reconnected":
                # A new offer will come from it: wait for that connection, not the old one.
                self.connected[message["peer_id"]] = asyncio.Event()
                await self.messages.put(message)
            elif kind == "offer":
                self.descriptions.append(message)
                other = message["from"]
                old = self.pcs.pop(other, None)
                if old is not None:  # aiortc cannot restart ICE: a new connection instead
                    await old.close()
                pc = self._pc(other)
                await pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                await self._describe("answer", other, pc)
            elif kind == "answer":
                self.descriptions.append(message)
                await self.pcs[message["from"]].setRemoteDescription(
                    RTCSessionDescription(message["sdp"], "answer")
                )
            elif kind == "candidate":
                self.trickled.append(message)
                init = message["candidate"]
                if init is None:
                    await self.pcs[message["from"]].addIceCandidate(None)
                    self.candidates_ended.setdefault(message["from"], asyncio.Event()).set()
                    continue
                candidate = candidate_from_sdp(init["candidate"].removeprefix("candidate:"))
                candidate.sdpMid, candidate.sdpMLineIndex = (
                    init.get("sdpMid"),
                    init.get("sdpMLineIndex"),
                )
                await self.pcs[message["from"]].addIceCandidate(candidate)
            else:
                await self.messages.put(message)

    async def wait_connected(self, other: str, within: float = WAIT_S) -> None:
        """Until the RTCPeerConnection with `other` is "connected" (ICE and DTLS done)."""
        await asyncio.wait_for(self.connected.setdefault(other, asyncio.Event()).wait(), within)

    async def end_of_candidates(self, other: str, within: float = WAIT_S) -> None:
        ended = self.candidates_ended.setdefault(other, asyncio.Event())
        await asyncio.wait_for(ended.wait(), within)

    async def channel_message(self, within: float = WAIT_S) -> tuple[str, str]:
        """The next data-channel message: (from whom, text)."""
        return await asyncio.wait_for(self.channel_messages.get(), within)

    async def first_frame(self, other: str, within: float = WAIT_S) -> VideoFrame:
        """The next decoded video frame received from `other`."""
        frames = self.frames.setdefault(other, asyncio.Queue())
        return await asyncio.wait_for(frames.get(), within)

    async def channel_open(self, other: str, within: float = WAIT_S) -> RTCDataChannel:
        opened = self.opened.setdefault(other, asyncio.Event())
        await asyncio.wait_for(opened.wait(), within)
        return self.channels[other]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for sink in self._sinks:
            sink.cancel()
        for pc in self.pcs.values():
            # aiortc's close waits for its SCTP and DTLS transports to stop, and once (CI,
            # 2026-11-23) never returned: a test's teardown gives it a bound, not 30 s of hang.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pc.close(), CLOSE_S)
