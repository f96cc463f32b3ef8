"""The in-memory bus and a socket's outbox, without sockets."""

from __future__ import annotations

import pytest

from services.teleconsult.signalling import room
from services.teleconsult.signalling.bus import CLOSE_SLOW, MemoryBus, Outbox, Outgoing, connect
from services.teleconsult.signalling.protocol import Chat
from services.teleconsult.tokens import RoomRole
from shared.settings import Settings


def member(peer: str, bus: MemoryBus, role: RoomRole = RoomRole.HOST) -> room.Member:
    return room.Member(peer, peer, "AP-HP", role, "specialist", f"c-{peer}", bus.instance)


async def test_a_reader_too_slow_is_closed_instead_of_growing_without_bound() -> None:
    outbox = Outbox(limit=3)
    for i in range(3):
        outbox.put(Outgoing({"n": i}))
    outbox.put(Outgoing({"n": 3}))  # one too many: the backlog is dropped for a close
    outbox.put(Outgoing({"n": 4}))  # nothing after a close
    item = await outbox.get()
    assert (item.message, item.close) == (None, CLOSE_SLOW)
    assert outbox.closed


async def test_the_memory_bus_applies_rules_and_delivers_to_attached_sockets_only() -> None:
    bus = MemoryBus()
    host, ana = member("host", bus), member("ana", bus)
    boxes = {m.conn: Outbox() for m in (host, ana)}
    for conn, box in boxes.items():
        bus.attach(7, conn, box)

    for m in (host, ana):
        await bus.update(7, lambda s, alive, m=m: room.join(s, m, max_people=6, alive=alive))
    assert (await boxes[host.conn].get()).message == {
        "type": "peer-joined",
        **ana.public(waiting=False),
    }
    relayed = await bus.update(
        7, lambda s, _a: room.act(s, "ana", ana.conn, Chat("salut")), writes=False
    )
    assert relayed.error is None
    assert (await boxes[host.conn].get()).message == {
        "type": "chat",
        "from": "ana",
        "name": "ana",
        "text": "salut",
    }
    bus.detach(host.conn)
    await bus.update(7, lambda s, _a: room.act(s, "ana", ana.conn, Chat("anyone?")), writes=False)
    assert not boxes[host.conn]._items  # a detached socket hears nothing
    assert bus.local_rooms() == {}  # neither is live yet (the socket marks it after welcome)
    boxes[ana.conn].live = True
    assert bus.local_rooms() == {7: [ana.conn]}


def test_the_signalling_url_picks_the_bus() -> None:
    assert isinstance(connect(Settings(signalling_url="memory://")), MemoryBus)
    with pytest.raises(ValueError, match="memory:// or redis://"):
        connect(Settings(signalling_url="amqp://broker"))
