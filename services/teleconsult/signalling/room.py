"""The rules of one teleconsult room, as pure functions over its state.

A room holds its members (one live socket each, on some replica) and the set
of peers the host has admitted. Every operation takes the state and returns
the next state plus the deliveries it causes (which socket gets which
message, and which sockets close); the bus stores the state and carries the
deliveries, so the same rules run in memory and across replicas on Redis.

Decisions (documented in the report and DESIGN's signalling contract):

- Waiting room: hosts and the recorder enter directly (the recorder's token is
  only issued once everyone consented); every other peer waits until a host
  admits it. Waiting peers see no one (`peers` is empty), receive nothing but
  `admitted` and `ended`, and may send nothing but `leave`. Hosts see waiting
  peers (`peer-joined` with `waiting: true`), so they know whom to admit.
- Admission lasts for the session: a peer that leaves or drops and comes back
  is admitted again directly.
- The limit counts people (hosts and participants, waiting or admitted); the
  recorder is not a person and never fills a room.
- Who offers: the peer that arrives (or is admitted, or reconnects) sends an
  offer to every peer in its `peers` list; the others wait for offers. One
  rule, so two peers never offer to each other at once (no glare).
- Reconnection: a peer opening a new socket under the same peer id while its
  old one is still open replaces it (the old socket closes with 4000). The
  others get `peer-reconnected` and expect a new offer from it (an ICE restart
  for a browser, a fresh RTCPeerConnection for aiortc, which cannot restart
  ICE); its `welcome` says `reconnected: true`. A peer whose old socket had
  already closed simply joins again (`peer-left`, then `peer-joined`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from services.teleconsult.signalling.protocol import (
    Admit,
    Answer,
    Candidate,
    Chat,
    ErrorCode,
    Offer,
    ProtocolError,
)
from services.teleconsult.tokens import RoomRole

CLOSE_NORMAL = 1000
CLOSE_REPLACED = 4000
"""The peer opened a newer socket; this one is closed (application code, RFC 6455 §7.4.2)."""
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


@dataclass(frozen=True, slots=True)
class Member:
    peer_id: str
    name: str
    institution: str
    role: RoomRole
    kind: str
    conn: str
    """The socket that speaks for this peer now (unique across replicas)."""
    instance: str
    """The replica holding that socket."""

    def public(self, *, waiting: bool) -> dict[str, Any]:
        """What other peers are shown of this one."""
        return {
            "peer_id": self.peer_id,
            "name": self.name,
            "institution": self.institution,
            "role": self.role.value,
            "kind": self.kind,
            "waiting": waiting,
        }


@dataclass(frozen=True, slots=True)
class RoomState:
    members: Mapping[str, Member] = field(default_factory=dict)
    admitted: frozenset[str] = frozenset()
    ended: bool = False

    def is_admitted(self, peer_id: str) -> bool:
        return peer_id in self.admitted


@dataclass(frozen=True, slots=True)
class Delivery:
    member: Member
    message: dict[str, Any] | None
    close: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    state: RoomState
    deliveries: tuple[Delivery, ...] = ()
    error: ProtocolError | None = None


@dataclass(frozen=True, slots=True)
class Joined:
    state: RoomState
    deliveries: tuple[Delivery, ...]
    refused: str | None
    """`ended` or `room_full` when the peer may not join; the state is then unchanged but pruned."""
    welcome: dict[str, Any]
    replaced: Member | None = None


def enters_directly(role: RoomRole) -> bool:
    return role in (RoomRole.HOST, RoomRole.RECORDER)


def is_person(role: RoomRole) -> bool:
    return role is not RoomRole.RECORDER


def observers(state: RoomState, member: Member) -> list[Member]:
    """Who is told about `member` arriving or leaving: everyone admitted, or only hosts if it waits."""
    others = [m for m in state.members.values() if m.peer_id != member.peer_id]
    if state.is_admitted(member.peer_id):
        return [m for m in others if state.is_admitted(m.peer_id)]
    return [m for m in others if m.role is RoomRole.HOST]


def visible_peers(state: RoomState, viewer: Member) -> list[dict[str, Any]]:
    """The `peers` list `viewer` is given: nothing while waiting; hosts also see who waits."""
    if not state.is_admitted(viewer.peer_id):
        return []
    shown = []
    for m in state.members.values():
        if m.peer_id == viewer.peer_id:
            continue
        waiting = not state.is_admitted(m.peer_id)
        if waiting and viewer.role is not RoomRole.HOST:
            continue
        shown.append(m.public(waiting=waiting))
    return shown


def _without(state: RoomState, peer_id: str) -> RoomState:
    return replace(state, members={k: v for k, v in state.members.items() if k != peer_id})


def prune(state: RoomState, alive: Collection[str]) -> Outcome:
    """Drop members whose socket is no longer alive (a replica died); the others see them leave."""
    gone = [m for m in state.members.values() if m.conn not in alive]
    deliveries: list[Delivery] = []
    for member in gone:
        deliveries += _left(state, member)
        state = _without(state, member.peer_id)
    live = {m.conn for m in state.members.values()}
    return Outcome(state, tuple(d for d in deliveries if d.member.conn in live))


def _left(state: RoomState, member: Member) -> list[Delivery]:
    message = {"type": "peer-left", "peer_id": member.peer_id}
    return [Delivery(m, message) for m in observers(state, member)]


def join(state: RoomState, member: Member, *, max_people: int, alive: Collection[str]) -> Joined:
    """Let `member` in (waiting or admitted), replacing an older socket of the same peer."""
    pruned = prune(state, alive)
    state, deliveries = pruned.state, list(pruned.deliveries)
    if state.ended:
        return Joined(state, tuple(deliveries), "ended", {})
    old = state.members.get(member.peer_id)
    people = sum(
        1 for m in state.members.values() if is_person(m.role) and m.peer_id != member.peer_id
    )
    if is_person(member.role) and people >= max_people:
        return Joined(state, tuple(deliveries), ErrorCode.ROOM_FULL, {})
    admitted = state.admitted | {member.peer_id} if enters_directly(member.role) else state.admitted
    state = RoomState({**state.members, member.peer_id: member}, admitted, state.ended)
    if old is not None:
        deliveries.append(Delivery(old, None, CLOSE_REPLACED, "replaced by a newer connection"))
        note = {
            "type": "peer-reconnected",
            **member.public(waiting=not state.is_admitted(member.peer_id)),
        }
    else:
        note = {
            "type": "peer-joined",
            **member.public(waiting=not state.is_admitted(member.peer_id)),
        }
    deliveries += [Delivery(m, note) for m in observers(state, member)]
    welcome = {
        "type": "welcome",
        "peer_id": member.peer_id,
        "name": member.name,
        "institution": member.institution,
        "role": member.role.value,
        "waiting": not state.is_admitted(member.peer_id),
        "reconnected": old is not None,
        "peers": visible_peers(state, member),
    }
    return Joined(state, tuple(deliveries), None, welcome, replaced=old)


def leave(state: RoomState, peer_id: str, conn: str) -> Outcome:
    """The socket `conn` is gone; its peer leaves unless a newer socket already speaks for it."""
    member = state.members.get(peer_id)
    if member is None or member.conn != conn:
        return Outcome(state)
    return Outcome(_without(state, peer_id), tuple(_left(state, member)))


def _sender(state: RoomState, peer_id: str, conn: str) -> Member | ProtocolError:
    member = state.members.get(peer_id)
    if member is None or member.conn != conn:
        return ProtocolError(
            ErrorCode.NOT_ALLOWED, "this connection no longer speaks for its peer", key="replaced"
        )
    if not state.is_admitted(peer_id):
        return ProtocolError(ErrorCode.NOT_ALLOWED, "a waiting peer may only leave", key="waiting")
    return member


def act(
    state: RoomState, peer_id: str, conn: str, message: Offer | Answer | Candidate | Chat | Admit
) -> Outcome:
    """Relay, chat or admit on behalf of `peer_id`, or say why not."""
    sender = _sender(state, peer_id, conn)
    if isinstance(sender, ProtocolError):
        return Outcome(state, error=sender)
    if isinstance(message, Admit):
        return _admit(state, sender, message.peer_id)
    if isinstance(message, Chat):
        note = {"type": "chat", "from": peer_id, "name": sender.name, "text": message.text}
        return Outcome(state, tuple(Delivery(m, note) for m in observers(state, sender)))
    target = state.members.get(message.to)
    if target is None or target.peer_id == peer_id or not state.is_admitted(target.peer_id):
        return Outcome(
            state,
            error=ProtocolError(
                ErrorCode.UNKNOWN_PEER, f"no peer {message.to!r} in this room", key="unknown_peer"
            ),
        )
    relayed: dict[str, Any] = {"type": message.type, "from": peer_id, "to": target.peer_id}
    if isinstance(message, Candidate):
        relayed["candidate"] = message.candidate
    else:
        relayed["sdp"] = message.sdp
    return Outcome(state, (Delivery(target, relayed),))


def _admit(state: RoomState, host: Member, peer_id: str) -> Outcome:
    if host.role is not RoomRole.HOST:
        return Outcome(
            state,
            error=ProtocolError(ErrorCode.NOT_ALLOWED, "only the host admits", key="host_admits"),
        )
    target = state.members.get(peer_id)
    if target is None:
        return Outcome(
            state,
            error=ProtocolError(
                ErrorCode.UNKNOWN_PEER, f"no peer {peer_id!r} in this room", key="unknown_peer"
            ),
        )
    if state.is_admitted(peer_id):
        return Outcome(
            state,
            error=ProtocolError(
                ErrorCode.NOT_WAITING, f"{peer_id!r} is already admitted", key="not_waiting"
            ),
        )
    state = replace(state, admitted=state.admitted | {peer_id})
    to_target = {"type": "admitted", "peer_id": peer_id, "peers": visible_peers(state, target)}
    to_others = {"type": "admitted", **target.public(waiting=False)}
    deliveries = [Delivery(target, to_target)]
    deliveries += [Delivery(m, to_others) for m in observers(state, target)]
    return Outcome(state, tuple(deliveries))


def may_end(state: RoomState, peer_id: str, conn: str) -> ProtocolError | None:
    sender = _sender(state, peer_id, conn)
    if isinstance(sender, ProtocolError):
        return sender
    if sender.role is not RoomRole.HOST:
        return ProtocolError(
            ErrorCode.NOT_ALLOWED, "only the host ends the session", key="host_ends"
        )
    return None


def end(state: RoomState, message: dict[str, Any]) -> Outcome:
    """The session is over: everyone, waiting or not, gets `message` (`ended`) and is closed."""
    deliveries = tuple(
        Delivery(m, message, CLOSE_NORMAL, "the teleconsultation ended")
        for m in state.members.values()
    )
    return Outcome(RoomState({}, state.admitted, ended=True), deliveries)


def announce(state: RoomState, message: dict[str, Any]) -> Outcome:
    """A server-side message for the room (from the REST API): `ended` ends it, others go to admitted peers."""
    if message.get("type") == "ended":
        return end(state, message)
    return Outcome(
        state,
        tuple(Delivery(m, message) for m in state.members.values() if state.is_admitted(m.peer_id)),
    )


def dumps(state: RoomState) -> str:
    """The state as JSON, for a store shared by replicas."""
    return json.dumps(
        {
            "members": [
                {**m.public(waiting=False), "conn": m.conn, "instance": m.instance}
                for m in state.members.values()
            ],
            "admitted": sorted(state.admitted),
            "ended": state.ended,
        }
    )


def loads(raw: str | bytes | None) -> RoomState:
    if not raw:
        return RoomState()
    data = json.loads(raw)
    members = {
        m["peer_id"]: Member(
            peer_id=m["peer_id"],
            name=m["name"],
            institution=m["institution"],
            role=RoomRole(m["role"]),
            kind=m["kind"],
            conn=m["conn"],
            instance=m["instance"],
        )
        for m in data["members"]
    }
    return RoomState(members, frozenset(data["admitted"]), bool(data["ended"]))
