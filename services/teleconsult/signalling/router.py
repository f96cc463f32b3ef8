"""The signalling socket, `/ws/teleconsults/{id}?token=<join token>`.

Before a peer joins, three checks, each refusal audited and closing the
socket with 1008 (policy violation) before it joins: the `Origin`
(`origins.allowed`: a browser page of another site; clients that send no
Origin, like aiortc peers, are judged by their token), the join token
(`tokens.verify`: forged, expired, for another room, not a join token; then
`spent.py`: a join token is single use, and one already presented to any
replica is refused as an expired one is), and `Hooks.check_entry` (the session
still open and `decide()` still allowing it). Then the peer gets `welcome` and
the room's rules (`room.py`) apply to whatever it sends, through the bus
(`bus.py`) that may span replicas.

Bad messages are answered with `error` and the socket stays open; a sender
over `signalling_max_messages_per_s` (token bucket, one second of burst) or
sending `MAX_STRIKES` refused messages in a row is closed. Other sockets and
rooms never notice: each socket has its own reader, writer and outbox, and
nothing raises out of the handler.

Close codes (RFC 6455 §7.4): 1000 left or ended; 1008 refused join, room
full, flood or garbage; 1009 repeated oversized messages; 1011 a part failed
(database, Redis); 1013 the client read too slowly; 4000 replaced by the same
peer's newer socket (a client must not reconnect on it, or two tabs would
take turns forever); 4001 its place lapsed (its replica stalled): reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.types import ASGIApp
from starlette.websockets import WebSocketState

from services.teleconsult import tokens
from services.teleconsult.signalling import bus as buses
from services.teleconsult.signalling import origins, protocol, room
from services.teleconsult.signalling import spent as spent_tokens
from services.teleconsult.signalling.bus import Bus, Outbox, Outgoing, RedisBus
from services.teleconsult.signalling.hooks import Hooks
from services.teleconsult.signalling.protocol import End, ErrorCode, Leave, ProtocolError
from services.teleconsult.signalling.spent import SpentTokens
from services.teleconsult.tokens import JoinGrant
from shared import audit
from shared.i18n import translate
from shared.platform import Platform
from shared.problems import InvalidToken, JisrError

__all__ = ["MAX_STRIKES", "Signalling", "announce", "install", "router", "signalling_for"]

log = logging.getLogger("jisr.teleconsult.signalling")

CLOSE_INTERNAL = 1011
MAX_STRIKES = 5
"""Refused messages in a row before the socket is closed as garbage."""
WRITER_DRAIN_S = 5.0
RESOURCE = "teleconsult"
JOIN_ACTION = "teleconsult.join"


@dataclass
class Signalling:
    """One process's signalling: its platform, its bus, the hooks into the sessions service,
    and the join tokens already spent (kept where the bus keeps rooms)."""

    platform: Platform
    bus: Bus
    hooks: Hooks = field(default_factory=Hooks)
    spent: SpentTokens = field(init=False)

    def __post_init__(self) -> None:
        self.spent = spent_tokens.for_bus(self.bus)

    async def start(self) -> None:
        await self.bus.start()
        _running[id(self.platform)] = self

    async def close(self) -> None:
        if _running.get(id(self.platform)) is self:
            del _running[id(self.platform)]
        await self.bus.close()


_running: dict[int, Signalling] = {}
"""The started signalling of each platform in this process, for `announce`."""


def install(app: Any, signalling: Signalling) -> Signalling:
    """Use `signalling` (its bus, its hooks) for `app`'s sockets; call before the app serves."""
    app.state.signalling = signalling
    return signalling


async def signalling_for(app: Any) -> Signalling:
    """The app's signalling, built from its settings and started on first use."""
    current: Signalling | None = getattr(app.state, "signalling", None)
    if current is None:  # no await between the look and the install: no race
        platform: Platform = app.state.platform
        current = install(app, Signalling(platform, buses.connect(platform.settings)))
    await current.start()
    return current


@asynccontextmanager
async def _lifespan(app: ASGIApp) -> AsyncIterator[None]:
    yield
    current: Signalling | None = getattr(app.state, "signalling", None)  # type: ignore[attr-defined]
    if current is not None:
        await current.close()


router = APIRouter(lifespan=_lifespan)


@router.websocket("/ws/teleconsults/{session_id}")
async def signalling_socket(websocket: WebSocket, session_id: int) -> None:
    """WebRTC signalling for one teleconsult room (DESIGN.md, "Public contract").

    Query parameter `token`: the join token from `POST /api/teleconsults/{id}/join`.
    """
    try:
        signalling = await signalling_for(websocket.app)
        grant = await _admit(websocket, signalling, session_id)
        if grant is not None:
            await _Peer(websocket, signalling, grant).run()
    except WebSocketDisconnect:
        pass  # the client went away while we spoke: nothing to answer
    except Exception:
        log.exception("signalling: socket of room %s failed", session_id)
        with contextlib.suppress(Exception):
            if websocket.client_state is WebSocketState.CONNECTING:
                await websocket.accept()  # so the client sees 1011, not a bare 403
            await websocket.close(code=CLOSE_INTERNAL)


async def _refuse(
    websocket: WebSocket, signalling: Signalling, refusal: audit.Refusal | None, reason: str
) -> None:
    if refusal is not None:
        try:
            await audit.write_refusal(signalling.platform.database, refusal)
        except Exception:
            log.exception("signalling: the refusal could not be audited")
    await websocket.accept()
    await websocket.close(
        code=room.CLOSE_POLICY, reason=reason.encode()[:120].decode(errors="ignore")
    )


def _refusal(session_id: int, rule: str, reason: str, details: dict[str, Any]) -> audit.Refusal:
    """A join refused before the peer is known (no trustworthy actor yet)."""
    return audit.Refusal(
        audit.Actor(),
        JOIN_ACTION,
        rule=rule,
        resource_type=RESOURCE,
        resource_id=session_id,
        reasons=[reason],
        details=details,
    )


async def _admit(websocket: WebSocket, signalling: Signalling, session_id: int) -> JoinGrant | None:
    """The peer's grant once origin, token and entry check pass; None after a refusal."""
    platform = signalling.platform
    origin = websocket.headers.get("origin")
    details = {"path": websocket.url.path, "origin": origin}
    if not origins.allowed(
        origin,
        host=websocket.headers.get("host"),
        allowed_origins=platform.settings.allowed_origins,
    ):
        reason = f"origin {origin!r} may not open signalling sockets"
        refusal = _refusal(session_id, "origin_not_allowed", reason, details)
        await _refuse(websocket, signalling, refusal, "origin not allowed")
        return None
    try:
        token = websocket.query_params.get("token") or ""
        if not token:
            raise InvalidToken("send the join token: ?token=<join token>")
        grant = tokens.verify(platform.keyring, platform.settings, token, session_id=session_id)
        if not await signalling.spent.spend(grant.jti, expires_at=grant.expires_at):
            details = {**details, "peer": grant.peer}  # whose token leaked or was replayed
            raise InvalidToken("the join token was already used: ask for a new one")
    except InvalidToken as exc:
        reason = exc.detail or "invalid token"
        await _refuse(
            websocket, signalling, _refusal(session_id, "invalid_token", reason, details), reason
        )
        return None
    try:
        await signalling.hooks.check_entry(platform, grant)
    except JisrError as exc:
        await _refuse(websocket, signalling, exc.refusal, exc.detail or exc.slug)
        return None
    return grant


class _Peer:
    """One socket's life: join, read and act, write from its outbox, leave."""

    def __init__(self, websocket: WebSocket, signalling: Signalling, grant: JoinGrant) -> None:
        self.websocket, self.signalling, self.grant = websocket, signalling, grant
        self.bus = signalling.bus
        self.settings = signalling.platform.settings
        self.session_id = grant.session_id
        self.outbox = Outbox()
        self.left = False
        self.member = room.Member(
            peer_id=grant.peer,
            name=grant.name,
            institution=grant.institution,
            role=grant.role,
            kind=grant.kind,
            conn=uuid.uuid4().hex,
            instance=self.bus.instance,
        )

    async def run(self) -> None:
        ice_servers = await self.signalling.hooks.ice_servers(self.signalling.platform, self.grant)
        await self.websocket.accept()
        self.bus.attach(self.session_id, self.member.conn, self.outbox)
        joined: room.Joined | None = None
        try:
            member, limit = self.member, self.settings.teleconsult_max_participants
            joined = await self.bus.update(
                self.session_id,
                lambda state, alive: room.join(state, member, max_people=limit, alive=alive),
            )
            if joined.refused == "ended":
                await self.websocket.send_json({"type": "ended", "by": "", "outcome": ""})
                await self.websocket.close(code=room.CLOSE_NORMAL, reason="ended")
                return
            if joined.refused is not None:
                full = ProtocolError(
                    ErrorCode.ROOM_FULL, "the room is full", key="room_full", limit=limit
                )
                await self.websocket.send_json(self._error(full))
                await self.websocket.close(code=room.CLOSE_POLICY, reason="room full")
                return
            await self.websocket.send_json({**joined.welcome, "ice_servers": ice_servers})
            self.outbox.live = True
            await self._converse()
        finally:
            self.bus.detach(self.member.conn)
            if joined is not None and joined.refused is None:
                await self._leave()

    async def _converse(self) -> None:
        reader: asyncio.Task[Any] = asyncio.create_task(self._read(), name="signalling-read")
        writer: asyncio.Task[Any] = asyncio.create_task(self._write(), name="signalling-write")
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if not t.cancelled() and t.exception() is not None]
        if reader in done and not failed and reader.result():
            # The reader asked to close: let the writer send what is queued, then the close.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(writer), WRITER_DRAIN_S)
        for task in (reader, writer):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if reader in failed:
            log.error(
                "signalling: peer %s in room %s failed",
                self.member.peer_id,
                self.session_id,
                exc_info=reader.exception(),
            )
            with contextlib.suppress(Exception):
                await self.websocket.close(code=CLOSE_INTERNAL)

    async def _write(self) -> None:
        while True:
            item = await self.outbox.get()
            if item.message is not None:
                await self.websocket.send_json(item.message)
            if item.close is not None:
                await self.websocket.close(code=item.close, reason=item.reason)
                return

    def _error(self, problem: ProtocolError) -> dict[str, Any]:
        """`error`, its detail in the peer's language when a person may read it."""
        detail = problem.detail
        if problem.key is not None:
            detail = translate(f"signalling.{problem.key}", self.grant.lang, **problem.params)
        return protocol.error(problem.code, detail)

    def _send(self, message: dict[str, Any], *, close: int | None = None, reason: str = "") -> None:
        self.outbox.put(Outgoing(message, close, reason))

    async def _read(self) -> bool:
        """Read until the client goes (False) or this side decides to close it (True)."""
        rate = self.settings.signalling_max_messages_per_s
        bucket = protocol.TokenBucket.full(rate, time.monotonic())
        strikes = 0
        while True:
            event = await self.websocket.receive()
            if event["type"] == "websocket.disconnect":
                return False
            raw = event.get("text")
            if raw is None:
                raw = event.get("bytes")
            if raw is None:
                continue
            if not bucket.take(time.monotonic()):
                flood = ProtocolError(
                    ErrorCode.RATE_LIMITED,
                    f"more than {rate:g} messages a second",
                    key="rate_limited",
                )
                self._send(self._error(flood), close=room.CLOSE_POLICY, reason="message flood")
                return True
            problem = await self._handle(raw)
            if problem is None:
                strikes = 0
                continue
            if problem.code == "closed":
                return True
            strikes += 1
            if strikes >= MAX_STRIKES:
                code = (
                    room.CLOSE_TOO_BIG if problem.code == ErrorCode.TOO_LARGE else room.CLOSE_POLICY
                )
                last = ProtocolError(problem.code, problem.detail, key="bad_messages")
                self._send(self._error(last), close=code, reason="too many bad messages")
                return True
            self._send(self._error(problem))

    async def _handle(self, raw: str | bytes) -> ProtocolError | None:
        """Act on one message; the problem to answer with, if any (code "closed": we are done)."""
        try:
            message = protocol.parse(raw, max_bytes=self.settings.signalling_max_message_bytes)
        except ProtocolError as exc:
            return exc
        peer, conn = self.member.peer_id, self.member.conn
        if isinstance(message, Leave):
            await self._leave()
            self._send({"type": "left", "peer_id": peer}, close=room.CLOSE_NORMAL, reason="left")
            return ProtocolError("closed", "")
        if isinstance(message, End):
            return await self._end(message)
        result = await self.bus.update(
            self.session_id,
            lambda state, _alive: room.act(state, peer, conn, message),
            writes=isinstance(message, protocol.Admit),
        )
        return result.error

    async def _end(self, message: End) -> ProtocolError | None:
        peer, conn = self.member.peer_id, self.member.conn
        check = await self.bus.update(
            self.session_id,
            lambda state, _alive: room.Outcome(state, error=room.may_end(state, peer, conn)),
            writes=False,
        )
        if check.error is not None:
            return check.error
        try:
            await self.signalling.hooks.end_session(
                self.signalling.platform, self.grant, message.outcome, message.note
            )
        except JisrError as exc:
            if exc.refusal is not None:
                await audit.write_refusal(self.signalling.platform.database, exc.refusal)
            return ProtocolError(ErrorCode.END_FAILED, exc.detail or exc.slug)
        except Exception:
            log.exception("signalling: the end of room %s could not be recorded", self.session_id)
            return ProtocolError(
                ErrorCode.END_FAILED, "the end could not be recorded", key="end_failed"
            )
        ended = {"type": "ended", "by": peer, "outcome": message.outcome}
        await self.bus.update(self.session_id, lambda state, _alive: room.end(state, ended))
        return None

    async def _leave(self) -> None:
        """Leave the room once (a `leave`, then the socket closing, call this twice)."""
        if self.left:
            return
        self.left = True
        peer, conn = self.member.peer_id, self.member.conn
        removed = False

        def op(state: room.RoomState, _alive: object) -> room.Outcome:
            nonlocal removed
            current = state.members.get(peer)
            removed = current is not None and current.conn == conn
            return room.leave(state, peer, conn)

        try:
            await self.bus.update(self.session_id, op)
            if removed:
                await self.signalling.hooks.peer_left(self.signalling.platform, self.grant)
        except Exception:
            log.exception(
                "signalling: peer %s could not leave room %s cleanly", peer, self.session_id
            )


async def announce(target: Platform | Bus, session_id: int, message: dict[str, Any]) -> None:
    """Tell a room something from outside a socket (the REST end route sends `ended`).

    `ended` ends the room: every peer gets it and is closed. Any other message
    goes to the admitted peers. Given a platform, the process's running
    signalling is used, or, with Redis, a short-lived bus that reaches every
    replica; with the in-memory bus and no socket in this process, no room
    exists to tell.
    """
    if isinstance(target, Bus):
        await target.update(session_id, lambda state, _alive: room.announce(state, message))
        return
    running = _running.get(id(target))
    if running is not None and running.platform is target:
        await running.bus.update(session_id, lambda state, _alive: room.announce(state, message))
        return
    bus = buses.connect(target.settings)
    if not isinstance(bus, RedisBus):
        return
    try:
        await bus.update(session_id, lambda state, _alive: room.announce(state, message))
    finally:
        await bus.close()
