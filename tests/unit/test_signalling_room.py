"""The room rules (waiting room, admission, limit, relay, reconnection, pruning), on plain data."""

from __future__ import annotations

from typing import Any

from services.teleconsult.signalling import room
from services.teleconsult.signalling.protocol import Admit, Answer, Candidate, Chat, Offer
from services.teleconsult.signalling.room import Delivery, Member, RoomState
from services.teleconsult.tokens import RoomRole

SDP = "v=0\r\n"


def member(
    peer: str, role: RoomRole = RoomRole.PARTICIPANT, *, conn: str = "", instance: str = "a"
) -> Member:
    return Member(
        peer_id=peer,
        name=peer.title(),
        institution="AP-HP",
        role=role,
        kind="specialist",
        conn=conn or f"c-{peer}",
        instance=instance,
    )


HOST = member("host", RoomRole.HOST)
ANA = member("ana")
BOB = member("bob")
REC = member("recorder", RoomRole.RECORDER)


def enter(state: RoomState, *members: Member, limit: int = 6) -> RoomState:
    for m in members:
        alive = {x.conn for x in state.members.values()} | {m.conn}
        joined = room.join(state, m, max_people=limit, alive=alive)
        assert joined.refused is None
        state = joined.state
    return state


def admit(state: RoomState, *peers: str) -> RoomState:
    for peer in peers:
        outcome = room.act(state, "host", HOST.conn, Admit(peer))
        assert outcome.error is None
        state = outcome.state
    return state


def to(deliveries: tuple[Delivery, ...]) -> dict[str, list[dict[str, Any] | None]]:
    out: dict[str, list[dict[str, Any] | None]] = {}
    for d in deliveries:
        out.setdefault(d.member.peer_id, []).append(d.message)
    return out


def test_the_host_and_the_recorder_enter_directly_everyone_else_waits() -> None:
    state = enter(RoomState(), HOST)
    joined = room.join(state, ANA, max_people=6, alive={HOST.conn, ANA.conn})
    assert joined.welcome["waiting"] is True and joined.welcome["peers"] == []
    assert to(joined.deliveries) == {"host": [{"type": "peer-joined", **ANA.public(waiting=True)}]}
    rec = room.join(joined.state, REC, max_people=6, alive={HOST.conn, ANA.conn, REC.conn})
    assert rec.welcome["waiting"] is False
    assert [p["peer_id"] for p in rec.welcome["peers"]] == [
        "host"
    ]  # the recorder sees no one waiting
    assert set(to(rec.deliveries)) == {"host"}


def test_a_waiting_peer_is_seen_by_hosts_only_and_may_only_leave() -> None:
    state = admit(enter(RoomState(), HOST, ANA), "ana")
    joined = room.join(state, BOB, max_people=6, alive={HOST.conn, ANA.conn, BOB.conn})
    assert set(to(joined.deliveries)) == {"host"}
    state = joined.state
    host_view = room.visible_peers(state, HOST)
    assert {p["peer_id"]: p["waiting"] for p in host_view} == {"ana": False, "bob": True}
    assert [p["peer_id"] for p in room.visible_peers(state, ANA)] == ["host"]
    for message in (Chat("hi"), Offer("host", SDP), Candidate("host", None), Admit("ana")):
        refused = room.act(state, "bob", BOB.conn, message)
        assert refused.error is not None and refused.error.code == "not_allowed"
        assert refused.deliveries == ()
    chat = room.act(state, "host", HOST.conn, Chat("hello"))
    assert set(to(chat.deliveries)) == {"ana"}
    to_bob = room.act(state, "ana", ANA.conn, Offer("bob", SDP))
    assert to_bob.error is not None and to_bob.error.code == "unknown_peer"  # not revealed


def test_admission_tells_the_newcomer_whom_to_offer_and_the_others_who_came() -> None:
    state = admit(enter(RoomState(), HOST, ANA), "ana")
    state = enter(state, BOB)
    outcome = room.act(state, "host", HOST.conn, Admit("bob"))
    got = to(outcome.deliveries)
    assert got["bob"] == [
        {
            "type": "admitted",
            "peer_id": "bob",
            "peers": [HOST.public(waiting=False), ANA.public(waiting=False)],
        }
    ]
    assert got["host"] == got["ana"] == [{"type": "admitted", **BOB.public(waiting=False)}]
    again = room.act(outcome.state, "host", HOST.conn, Admit("bob"))
    assert again.error is not None and again.error.code == "not_waiting"
    nobody = room.act(outcome.state, "host", HOST.conn, Admit("zed"))
    assert nobody.error is not None and nobody.error.code == "unknown_peer"
    by_ana = room.act(outcome.state, "ana", ANA.conn, Admit("bob"))
    assert by_ana.error is not None and by_ana.error.code == "not_allowed"


def test_relays_go_to_the_named_peer_with_from_added() -> None:
    state = admit(enter(RoomState(), HOST, ANA), "ana")
    offer = room.act(state, "ana", ANA.conn, Offer("host", SDP))
    assert to(offer.deliveries) == {
        "host": [{"type": "offer", "from": "ana", "to": "host", "sdp": SDP}]
    }
    answer = room.act(state, "host", HOST.conn, Answer("ana", SDP))
    assert to(answer.deliveries) == {
        "ana": [{"type": "answer", "from": "host", "to": "ana", "sdp": SDP}]
    }
    init = {
        "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    cand = room.act(state, "host", HOST.conn, Candidate("ana", init))
    assert to(cand.deliveries)["ana"][0] == {
        "type": "candidate",
        "from": "host",
        "to": "ana",
        "candidate": init,
    }
    for target in ("ana", "zed"):  # itself, a stranger
        bad = room.act(state, "ana", ANA.conn, Offer(target, SDP))
        assert bad.error is not None and bad.error.code == "unknown_peer"
    stale = room.act(state, "ana", "an-old-socket", Chat("hi"))
    assert stale.error is not None and stale.error.code == "not_allowed"


def test_the_limit_counts_people_not_the_recorder_nor_a_returning_peer() -> None:
    state = enter(RoomState(), HOST, ANA, limit=2)
    full = room.join(state, BOB, max_people=2, alive={HOST.conn, ANA.conn})
    assert full.refused == "room_full" and full.state == state and full.deliveries == ()
    assert room.join(state, REC, max_people=2, alive={HOST.conn, ANA.conn}).refused is None
    ana_again = member("ana", conn="c-ana-2")
    assert room.join(state, ana_again, max_people=2, alive={HOST.conn, ANA.conn}).refused is None


def test_a_new_socket_for_a_present_peer_replaces_the_old_one_and_keeps_its_admission() -> None:
    state = admit(enter(RoomState(), HOST, ANA), "ana")
    ana2 = member("ana", conn="c-ana-2", instance="b")
    joined = room.join(state, ana2, max_people=6, alive={HOST.conn, ANA.conn})
    assert joined.replaced == ANA and joined.welcome["reconnected"] is True
    assert joined.welcome["waiting"] is False
    closes = [d for d in joined.deliveries if d.close is not None]
    assert [(d.member.conn, d.close) for d in closes] == [("c-ana", room.CLOSE_REPLACED)]
    assert to(joined.deliveries)["host"] == [
        {"type": "peer-reconnected", **ana2.public(waiting=False)}
    ]
    # The old socket going away later changes nothing.
    assert room.leave(joined.state, "ana", "c-ana").state is joined.state
    left = room.leave(joined.state, "ana", "c-ana-2")
    assert "ana" not in left.state.members and left.state.is_admitted("ana")
    assert to(left.deliveries) == {"host": [{"type": "peer-left", "peer_id": "ana"}]}
    back = room.join(left.state, member("ana", conn="c-ana-3"), max_people=6, alive={HOST.conn})
    assert back.welcome["waiting"] is False and back.welcome["reconnected"] is False


def test_members_of_a_dead_replica_are_pruned_and_the_others_told() -> None:
    ana_b, bob_b = member("ana", instance="b"), member("bob", instance="b")
    state = admit(enter(RoomState(), HOST, ana_b, bob_b), "ana")
    pruned = room.prune(state, alive={HOST.conn})
    assert set(pruned.state.members) == {"host"}
    assert to(pruned.deliveries) == {
        "host": [{"type": "peer-left", "peer_id": "ana"}, {"type": "peer-left", "peer_id": "bob"}]
    }
    # A join prunes first: the room is no longer full of ghosts.
    state = enter(RoomState(), HOST, ana_b, limit=2)
    joined = room.join(state, BOB, max_people=2, alive={HOST.conn, BOB.conn})
    assert joined.refused is None and set(joined.state.members) == {"host", "bob"}


def test_ending_closes_everyone_and_no_one_joins_after() -> None:
    state = enter(admit(enter(RoomState(), HOST, ANA), "ana"), BOB)
    assert room.may_end(state, "ana", ANA.conn) is not None
    assert room.may_end(state, "host", HOST.conn) is None
    ended = room.end(state, {"type": "ended", "by": "host", "outcome": "completed"})
    assert {d.member.peer_id for d in ended.deliveries} == {"host", "ana", "bob"}
    assert {d.close for d in ended.deliveries} == {room.CLOSE_NORMAL}
    assert ended.state.ended and not ended.state.members
    assert room.join(ended.state, ANA, max_people=6, alive=set()).refused == "ended"
    told = room.announce(state, {"type": "note", "text": "recording started"})
    assert set(to(told.deliveries)) == {"host", "ana"}


def test_the_state_survives_a_round_trip_through_json() -> None:
    state = enter(admit(enter(RoomState(), HOST, ANA), "ana"), BOB, REC)
    assert room.loads(room.dumps(state)) == state
    assert room.loads(None) == RoomState()
