"""The signalling wire protocol: client messages parsed into types, server messages built.

Pure: no sockets, no clock but the one passed in. Messages are JSON objects
with a `type` (DESIGN.md, "Public contract"). Clients send:

    offer, answer   {to, sdp}          an SDP (RFC 8866) for one peer; aiortc puts
                                       its candidates inside, browsers trickle them
    candidate       {to, candidate}    an RTCIceCandidateInit (W3C WebRTC §4.8.1.1),
                                       or null for end-of-candidates
    chat            {text}
    leave           {}
    admit           {peer_id}          host only
    end             {outcome?, note?}  host only

The server sends `welcome`, relays the above with `from` added, and announces
`peer-joined`, `peer-left`, `peer-reconnected`, `admitted`, `ended` and
`error` {code, detail}. Anything a client gets wrong is a `ProtocolError`
with a stable code; the socket answers it with `error` and stays open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CHAT_MAX_CHARS",
    "Admit",
    "Answer",
    "Candidate",
    "Chat",
    "ClientMessage",
    "End",
    "ErrorCode",
    "Leave",
    "Offer",
    "ProtocolError",
    "TokenBucket",
    "error",
    "parse",
]

CHAT_MAX_CHARS = 4000
NOTE_MAX_CHARS = 2000
PEER_ID_MAX_CHARS = 200
OUTCOMES = frozenset({"completed", "no_show", "technical_failure"})
"""What an `end` may say happened (`sessions.models.Outcome`); the sessions service records it."""


class ErrorCode:
    """Stable `error.code` values clients can switch on."""

    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID = "invalid_message"
    UNKNOWN_PEER = "unknown_peer"
    NOT_ALLOWED = "not_allowed"
    NOT_WAITING = "not_waiting"
    ROOM_FULL = "room_full"
    RATE_LIMITED = "rate_limited"
    END_FAILED = "end_failed"


class ProtocolError(Exception):
    """What a client got wrong: a stable `code`, an English `detail` for developers, and,
    when a person may read it, the `key` of its words in `shared/i18n/signalling/`."""

    def __init__(self, code: str, detail: str, *, key: str | None = None, **params: Any) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.key = key
        self.params = params


@dataclass(frozen=True, slots=True)
class Offer:
    to: str
    sdp: str
    type: str = field(default="offer", init=False)


@dataclass(frozen=True, slots=True)
class Answer:
    to: str
    sdp: str
    type: str = field(default="answer", init=False)


@dataclass(frozen=True, slots=True)
class Candidate:
    to: str
    candidate: dict[str, Any] | None
    """The RTCIceCandidateInit as sent (only its known members kept); None ends gathering."""
    type: str = field(default="candidate", init=False)


@dataclass(frozen=True, slots=True)
class Chat:
    text: str
    type: str = field(default="chat", init=False)


@dataclass(frozen=True, slots=True)
class Leave:
    type: str = field(default="leave", init=False)


@dataclass(frozen=True, slots=True)
class Admit:
    peer_id: str
    type: str = field(default="admit", init=False)


@dataclass(frozen=True, slots=True)
class End:
    outcome: str = "completed"
    note: str = ""
    type: str = field(default="end", init=False)


ClientMessage = Offer | Answer | Candidate | Chat | Leave | Admit | End


def parse(raw: str | bytes, *, max_bytes: int) -> ClientMessage:
    """One client message, or `ProtocolError` saying what is wrong with it."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "replace"))
    if size > max_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"messages are limited to {max_bytes} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(ErrorCode.NOT_JSON, "a message is one JSON object") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.NOT_JSON, "a message is one JSON object")
    kind = data.get("type")
    builder = _BUILDERS.get(kind) if isinstance(kind, str) else None
    if builder is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}")
    message: ClientMessage = builder(data)
    return message


def _text(data: dict[str, Any], key: str, *, limit: int, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ProtocolError(ErrorCode.INVALID, f"{data['type']} needs `{key}` (a string)")
    if len(value) > limit:
        raise ProtocolError(ErrorCode.INVALID, f"`{key}` is limited to {limit} characters")
    return value


def _sdp(data: dict[str, Any]) -> str:
    sdp = data.get("sdp")
    if isinstance(sdp, dict):  # an RTCSessionDescriptionInit passed whole
        sdp = sdp.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise ProtocolError(ErrorCode.INVALID, f"{data['type']} needs `sdp`, an SDP starting v=0")
    return sdp


def _candidate(data: dict[str, Any]) -> dict[str, Any] | None:
    if "candidate" not in data:
        raise ProtocolError(
            ErrorCode.INVALID, "candidate needs `candidate` (RTCIceCandidateInit or null)"
        )
    value = data["candidate"]
    if value is None:
        return None
    if isinstance(value, str):  # the bare candidate-attribute string
        value = {"candidate": value}
    if not isinstance(value, dict) or not isinstance(value.get("candidate"), str):
        raise ProtocolError(ErrorCode.INVALID, "`candidate.candidate` must be a string")
    kept: dict[str, Any] = {"candidate": value["candidate"]}
    mid, index, ufrag = (
        value.get("sdpMid"),
        value.get("sdpMLineIndex"),
        value.get("usernameFragment"),
    )
    if mid is not None and not isinstance(mid, str):
        raise ProtocolError(ErrorCode.INVALID, "`candidate.sdpMid` must be a string or null")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise ProtocolError(ErrorCode.INVALID, "`candidate.sdpMLineIndex` must be a number or null")
    if ufrag is not None and not isinstance(ufrag, str):
        raise ProtocolError(
            ErrorCode.INVALID, "`candidate.usernameFragment` must be a string or null"
        )
    kept.update(sdpMid=mid, sdpMLineIndex=index)
    if ufrag is not None:
        kept["usernameFragment"] = ufrag
    return kept


def _end(data: dict[str, Any]) -> End:
    outcome = data.get("outcome", "completed")
    if outcome not in OUTCOMES:
        raise ProtocolError(ErrorCode.INVALID, f"`outcome` is one of {', '.join(sorted(OUTCOMES))}")
    return End(outcome=outcome, note=_text(data, "note", limit=NOTE_MAX_CHARS, required=False))


_BUILDERS: dict[str, Any] = {
    "offer": lambda d: Offer(to=_text(d, "to", limit=PEER_ID_MAX_CHARS), sdp=_sdp(d)),
    "answer": lambda d: Answer(to=_text(d, "to", limit=PEER_ID_MAX_CHARS), sdp=_sdp(d)),
    "candidate": lambda d: Candidate(
        to=_text(d, "to", limit=PEER_ID_MAX_CHARS), candidate=_candidate(d)
    ),
    "chat": lambda d: Chat(text=_text(d, "text", limit=CHAT_MAX_CHARS)),
    "leave": lambda d: Leave(),
    "admit": lambda d: Admit(peer_id=_text(d, "peer_id", limit=PEER_ID_MAX_CHARS)),
    "end": _end,
}


def error(code: str, detail: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "detail": detail}


@dataclass(slots=True)
class TokenBucket:
    """At most `rate` messages a second on average, `burst` at once (one second's worth)."""

    rate: float
    burst: float
    tokens: float
    at: float

    @classmethod
    def full(cls, rate: float, now: float) -> TokenBucket:
        burst = max(rate, 1.0)
        return cls(rate=rate, burst=burst, tokens=burst, at=now)

    def take(self, now: float) -> bool:
        """Spend one token; False when the bucket is empty (the sender floods)."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
