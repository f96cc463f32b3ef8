"""An aiortc peer in a teleconsult room: the signalling socket and one RTCPeerConnection per peer.

The server-side peers (the recorder, the benchmark's peers) speak the
signalling protocol of DESIGN.md like a browser does: the server greets with
`welcome` (`peer_id`, `peers`, `role`, `waiting`); the newcomer
sends an `offer` to every admitted peer already in the room, and answers any
`offer` it receives (W3C WebRTC §4.4, one `RTCPeerConnection` per remote
peer). aiortc does not trickle: its SDP carries every candidate once
gathering is complete. Browsers trickle `candidate` messages
(`RTCIceCandidateInit`: `candidate`, `sdpMid`, `sdpMLineIndex`), which are
added to the connection as they come; an empty candidate ends the trickle.

Every connection is given the ICE servers it is handed (the platform's, or
`[]` on loopback): never aiortc's public default.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp
from websockets.asyncio.client import ClientConnection, connect

log = logging.getLogger("jisr.teleconsult.room")

MAX_MESSAGE_BYTES = 1024 * 1024

Message = dict[str, Any]
ConnectionFactory = Callable[[str], Awaitable[RTCPeerConnection]]
"""Builds the connection to one remote peer (adds tracks, data channels, handlers)."""


class RoomError(Exception):
    """The signalling server refused the peer or closed the room."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


def ice_servers_from(entries: Sequence[Any]) -> list[RTCIceServer]:
    """`RTCIceServer`s from the JSON shape the join API and `welcome` use (W3C `RTCIceServer`)."""
    servers: list[RTCIceServer] = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("urls"):
            continue
        servers.append(
            RTCIceServer(
                urls=entry["urls"],
                username=entry.get("username"),
                credential=entry.get("credential"),
            )
        )
    return servers


def pin_host_addresses(addresses: Sequence[str]) -> None:
    """Gather host candidates on these addresses only (aioice skips loopback by default).

    For a recorder on a machine with several interfaces, and for hermetic
    tests on 127.0.0.1. It applies to the whole process.
    """
    pinned = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in pinned if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def candidate_from_init(init: Any) -> RTCIceCandidate | None:
    """A browser's trickled `RTCIceCandidateInit` as aiortc's candidate; None ends the trickle."""
    if isinstance(init, str):
        init = {"candidate": init, "sdpMLineIndex": 0}
    if not isinstance(init, dict):
        return None
    line = init.get("candidate")
    if not isinstance(line, str) or not line.strip():
        return None
    text = line.strip()
    if text.startswith("a="):
        text = text[2:]
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    candidate = candidate_from_sdp(text)
    mid = init.get("sdpMid")
    index = init.get("sdpMLineIndex")
    candidate.sdpMid = str(mid) if mid is not None else None
    candidate.sdpMLineIndex = int(index) if isinstance(index, int) else None
    return candidate


@dataclass
class Welcome:
    peer_id: str
    peers: list[Message]
    ice_servers: list[Any]
    role: str
    waiting: bool


@dataclass
class RoomPeer:
    """This peer's side of a room: its socket and a connection per remote peer.

    `connect(remote_id)` is called to build each connection; `on_message` sees
    every signalling message that is not SDP or a candidate (chat, peer-joined,
    ended...). The room runs until `close()`, `ended`, or the socket closes.
    """

    ws_url: str
    connection_factory: ConnectionFactory
    on_message: Callable[[Message], Awaitable[None]] | None = None
    origin: str | None = None
    connections: dict[str, RTCPeerConnection] = field(default_factory=dict)
    welcome: Welcome | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _ws: ClientConnection | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def open(self, timeout_s: float = 10.0) -> Welcome:
        """Connect and wait for `welcome`; `RoomError` if the server answers `error` or closes."""
        headers = {"Origin": self.origin} if self.origin else None
        self._ws = await connect(
            self.ws_url,
            additional_headers=headers,
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=timeout_s,
        )
        try:
            first = await asyncio.wait_for(self._receive(), timeout_s)
        except Exception:
            await self._ws.close()
            raise
        if first is None:
            raise RoomError("closed", "the signalling server closed the socket")
        if first.get("type") == "error":
            await self._ws.close()
            raise RoomError(str(first.get("code") or "error"), str(first.get("detail") or ""))
        if first.get("type") != "welcome":
            await self._ws.close()
            raise RoomError("unexpected", f"expected welcome, got {first.get('type')!r}")
        self.welcome = Welcome(
            peer_id=str(first.get("peer_id") or ""),
            peers=[p for p in first.get("peers") or [] if isinstance(p, dict)],
            ice_servers=list(first.get("ice_servers") or []),
            role=str(first.get("role") or ""),
            waiting=bool(first.get("waiting")),
        )
        return self.welcome

    async def send(self, message: Message) -> None:
        assert self._ws is not None, "open() first"
        await self._ws.send(json.dumps(message))

    async def _receive(self) -> Message | None:
        assert self._ws is not None
        while True:
            try:
                raw = await self._ws.recv()
            except Exception:  # closed: normally or not, the room is over for us
                return None
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if isinstance(message, dict):
                return message

    async def offer_to(self, remote_id: str) -> None:
        """Send an offer (with every gathered candidate in its SDP) to `remote_id`."""
        pc = await self._connection(remote_id)
        await pc.setLocalDescription(await pc.createOffer())
        local = pc.localDescription
        await self.send({"type": "offer", "to": remote_id, "sdp": local.sdp})

    async def offer_to_room(self) -> None:
        """The newcomer's part: an offer to every admitted peer already in the room."""
        assert self.welcome is not None
        for peer in self.welcome.peers:
            remote = str(peer.get("peer_id") or peer.get("id") or "")
            if remote and not peer.get("waiting"):
                await self.offer_to(remote)

    async def _connection(self, remote_id: str) -> RTCPeerConnection:
        pc = self.connections.get(remote_id)
        if pc is None:
            pc = await self.connection_factory(remote_id)
            self.connections[remote_id] = pc
        return pc

    async def run(self) -> None:
        """Handle messages until the room ends or the socket closes."""
        while True:
            message = await self._receive()
            if message is None:
                break
            try:
                await self._handle(message)
            except Exception:
                log.exception("signalling message %s failed", message.get("type"))
            if self.ended.is_set():
                break
        self.ended.set()

    async def _handle(self, message: Message) -> None:
        kind = message.get("type")
        remote = str(message.get("from") or "")
        if kind == "offer" and remote:
            await self._answer(remote, str(message.get("sdp") or ""))
        elif kind == "answer" and remote in self.connections:
            pc = self.connections[remote]
            if pc.signalingState == "have-local-offer":
                await pc.setRemoteDescription(
                    RTCSessionDescription(sdp=str(message.get("sdp") or ""), type="answer")
                )
        elif kind == "candidate" and remote in self.connections:
            candidate = candidate_from_init(message.get("candidate"))
            if candidate is not None:
                await self.connections[remote].addIceCandidate(candidate)
        elif kind in ("peer-left", "peer-reconnected"):
            # Gone, or back on a new socket and about to offer again: drop our side.
            gone = self.connections.pop(str(message.get("peer_id") or remote), None)
            if gone is not None:
                await gone.close()
        elif kind == "admitted" and self.welcome is not None:
            if str(message.get("peer_id") or "") == self.welcome.peer_id:
                # Let in from the waiting room: now the newcomer's offers go out.
                self.welcome.waiting = False
                self.welcome.peers = [p for p in message.get("peers") or [] if isinstance(p, dict)]
                await self.offer_to_room()
        elif kind == "ended":
            self.ended.set()
        if self.on_message is not None:
            await self.on_message(message)

    async def _answer(self, remote_id: str, sdp: str) -> None:
        old = self.connections.pop(remote_id, None)
        if old is not None:
            # aiortc cannot restart ICE: a new offer from a peer (it reconnected, or
            # restarts ICE) gets a new connection.
            await old.close()
        pc = await self._connection(remote_id)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.send({"type": "answer", "to": remote_id, "sdp": pc.localDescription.sdp})

    async def close(self, *, leave: bool = True) -> None:
        if self._ws is not None:
            if leave:
                with contextlib.suppress(Exception):
                    await self.send({"type": "leave"})
            await self._ws.close()
        for pc in list(self.connections.values()):
            await pc.close()
        self.connections.clear()


def configuration(ice_servers: Sequence[Any], *, relay_only: bool = False) -> RTCConfiguration:
    """The `RTCConfiguration` of a server-side peer: the given servers, never a public default."""
    from aiortc.rtcconfiguration import RTCIceTransportPolicy

    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=ice_servers_from(ice_servers), iceTransportPolicy=policy)
