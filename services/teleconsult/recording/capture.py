"""The recorder's media side: one aiortc `MediaRecorder` file per participant of a room.

The recorder is a receive-only peer (W3C WebRTC `recvonly` transceivers): it
offers to every admitted participant it finds in `welcome`, answers the offers
of those who come later, and writes each participant's audio and video into a
Matroska file of its own (libx264 and AAC, as `MediaRecorder` encodes them).
One file per participant, because a container's streams are fixed once its
header is written, and participants arrive at different times. Matroska
because a file cut short (a killed process) stays readable.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.contrib.media import MediaRecorder

from services.teleconsult.recording.room import Message, RoomPeer, configuration

log = logging.getLogger("jisr.teleconsult.recorder")

SUFFIX = ".mkv"


@dataclass
class Participant:
    peer_id: str
    name: str = ""
    institution: str = ""
    paths: list[Path] = field(default_factory=list)
    """One file per connection: a peer that reconnects starts a new one."""
    recorder: MediaRecorder | None = None
    tracks: list[MediaStreamTrack] = field(default_factory=list)
    started: bool = False


PROGRESS_FRAMES = (1, 30, 300)
"""Video frames received from a participant at which the recorder logs its progress."""


class _Counted(MediaStreamTrack):
    """Passes a participant's track to `MediaRecorder`, logging how much video has come.

    The log is the recorder's progress (an operator sees that media flows, not only that
    ICE connected) and what the end-to-end tests wait on before ending a session.
    """

    def __init__(self, source: MediaStreamTrack, peer_id: str) -> None:
        super().__init__()
        self.kind = source.kind
        self._source, self._peer, self._frames = source, peer_id, 0

    async def recv(self) -> Any:
        frame = await self._source.recv()
        if self.kind == "video":
            self._frames += 1
            if self._frames in PROGRESS_FRAMES or self._frames % 3000 == 0:
                log.info("recorder received %d video frames from %s", self._frames, self._peer)
        return frame

    def stop(self) -> None:
        super().stop()
        self._source.stop()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60] or "peer"


@dataclass
class RoomCapture:
    """Records every participant of the room behind `ws_url` into files under `folder`."""

    ws_url: str
    folder: Path
    ice_servers: Sequence[Any] = ()
    origin: str | None = None
    participants: dict[str, Participant] = field(default_factory=dict)
    room: RoomPeer | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first participant's media flows to the recorder."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when someone joins, is admitted or comes back: consent is checked again."""

    async def _connection(self, remote_id: str) -> RTCPeerConnection:
        pc = RTCPeerConnection(configuration(self.ice_servers))
        who = self.participants.setdefault(remote_id, Participant(remote_id))
        await self._stop(who)
        who.tracks, who.started = [], False
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            who.tracks.append(track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("recorder connection to %s: %s", remote_id, pc.connectionState)
            if pc.connectionState == "connected":
                await self._start(who)
                self.connected.set()

        return pc

    async def _start(self, who: Participant) -> None:
        if who.started or not who.tracks:
            return
        who.started = True
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{_safe(who.peer_id)}-{len(who.paths) + 1}{SUFFIX}"
        who.paths.append(path)
        who.recorder = MediaRecorder(str(path), format="matroska")
        for track in who.tracks:
            who.recorder.addTrack(_Counted(track, who.peer_id))
        await who.recorder.start()

    async def _on_message(self, message: Message) -> None:
        kind = message.get("type")
        if kind in ("peer-joined", "admitted", "peer-reconnected"):
            self.changed.set()
        if kind == "peer-joined":
            peer = str(message.get("peer_id") or message.get("from") or "")
            if peer:
                who = self.participants.setdefault(peer, Participant(peer))
                who.name = str(message.get("name") or who.name)
                who.institution = str(message.get("institution") or who.institution)
        elif kind == "peer-left":
            peer = str(message.get("peer_id") or message.get("from") or "")
            known = self.participants.get(peer)
            if known is not None:
                await self._stop(known)

    async def open(self) -> None:
        """Join the room (`RoomError` if refused) and offer to everyone admitted in it."""
        ice = list(self.ice_servers)
        self.room = RoomPeer(
            self.ws_url, self._connection, on_message=self._on_message, origin=self.origin
        )
        welcome = await self.room.open()
        if not ice:
            # No servers of our own given: use the ones the platform handed us in `welcome`.
            self.ice_servers = welcome.ice_servers
        for peer in welcome.peers:
            peer_id = str(peer.get("peer_id") or "")
            if peer_id:
                self.participants[peer_id] = Participant(
                    peer_id, str(peer.get("name") or ""), str(peer.get("institution") or "")
                )
        await self.room.offer_to_room()

    async def run(self, *, max_duration_s: float | None = None) -> list[Path]:
        """Record until the room ends, the socket closes, or `max_duration_s`; the files written."""
        assert self.room is not None, "open() first"
        try:
            await asyncio.wait_for(self.room.run(), max_duration_s)
        except TimeoutError:
            log.info("recording reached its maximum duration")
        return await self.stop()

    async def stop(self) -> list[Path]:
        """Close every file and leave; the paths of the files that hold media."""
        for who in self.participants.values():
            await self._stop(who)
        if self.room is not None:
            await self.room.close()
        return [
            path
            for who in self.participants.values()
            for path in who.paths
            if path.exists() and path.stat().st_size > 0
        ]

    async def _stop(self, who: Participant) -> None:
        if who.recorder is not None:
            recorder, who.recorder = who.recorder, None
            await recorder.stop()
