"""A join token opens the signalling socket once; a fresh join (or the patient's pass) gets another.

The embedded backend: an app given only the router builds its signalling from
the settings (`memory://`), the sessions service behind it, sessions scheduled
and joined through the REST API (`Clinic`), on SQLite and PostgreSQL. The same
rule across replicas sharing Redis is in `test_signalling_redis.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.teleconsult import tokens
from services.teleconsult.signalling.router import router
from services.teleconsult.signalling.spent import MemorySpent
from shared.audit import AuditEvent
from shared.identity.tokens import Keyring
from shared.web import make_app
from tests.teleconsult.conftest import Clinic
from tests.teleconsult.peers import serve
from tests.teleconsult.test_signalling_refusals import Door

ALREADY_USED = "already used"


@dataclass
class Room(Door):
    """The door of `test_signalling_refusals`, served by an app that chose its own backend."""

    app: Any = None
    patient_link: dict[str, Any] = field(default_factory=dict)

    async def pass_ticket(self, session_pass: str) -> str:
        """A fresh join token bought with the patient's session pass."""
        auth = {"Authorization": f"Bearer {session_pass}"}
        response = await self.clinic.post(None, f"/api/teleconsults/{self.sid}/join", headers=auth)
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    async def refusals(self) -> list[AuditEvent]:
        events = await self.clinic.audit("teleconsult.join")
        return [e for e in events if e.outcome == "refused"]


@pytest.fixture
async def room(clinic: Clinic) -> AsyncIterator[Room]:
    app = make_app("signalling with sessions", [router], platform=clinic.platform)
    created = await clinic.scheduled(patient={"display_name": "Yacine B.", "language": "ar"})
    async with serve(app) as base:
        yield Room(clinic, base, created["id"], app=app, patient_link=created["patient_link"])


async def test_a_join_token_opens_the_socket_once_and_a_fresh_join_opens_it_again(
    room: Room,
) -> None:
    clinic = room.clinic
    token = await room.ticket(clinic.referrer)
    async with room.open(token) as host:
        assert (await host.expect("welcome"))["role"] == "host"
        # The same token again, while its first socket lives: refused, and the peer
        # in the room is not replaced by whoever replayed it.
        assert ALREADY_USED in await room.refused(token)
        await host.send({"type": "chat", "text": "still here"})
        assert host.close_code is None and host.nothing_pending()
        await host.send({"type": "leave"})
        assert await host.wait_closed() == 1000
    assert isinstance(room.app.state.signalling.spent, MemorySpent)  # embedded: in-process
    # After the peer left, the token still opens nothing; a fresh join does.
    assert ALREADY_USED in await room.refused(token)
    async with room.open(await room.ticket(clinic.referrer)) as again:
        assert (await again.expect("welcome"))["peer_id"] == f"user:{clinic.referrer.id}"

    refusals = await room.refusals()
    assert [e.rule for e in refusals] == ["invalid_token", "invalid_token"]
    for event in refusals:  # audited as an expired token is, with whose token it was
        assert ALREADY_USED in event.reasons[0]
        assert event.details["peer"] == f"user:{clinic.referrer.id}"
        assert (event.resource_type, event.resource_id) == ("teleconsult", str(room.sid))


async def test_the_patients_pass_is_reusable_and_buys_a_fresh_join_token_each_time(
    room: Room,
) -> None:
    clinic = room.clinic
    patient = f"guest:{room.patient_link['participant_id']}"
    secret = {"secret": room.patient_link["secret"]}
    joined = await clinic.post(None, f"/api/teleconsults/{room.sid}/join/guest", secret)
    assert joined.status_code == 200, joined.text
    first, session_pass = joined.json()["token"], joined.json()["session_pass"]
    async with room.open(first) as socket:
        assert (await socket.expect("welcome"))["peer_id"] == patient
    assert ALREADY_USED in await room.refused(first)

    # After each drop the page asks again with its pass, which stays good.
    seen = {first}
    for _ in range(2):
        token = await room.pass_ticket(session_pass)
        assert token not in seen
        seen.add(token)
        async with room.open(token) as socket:
            assert (await socket.expect("welcome"))["peer_id"] == patient
        assert ALREADY_USED in await room.refused(token)

    # The pass itself never opens the socket, and a spent join token buys nothing.
    assert ALREADY_USED not in await room.refused(session_pass)
    as_token = {"Authorization": f"Bearer {first}"}
    refused = await clinic.post(None, f"/api/teleconsults/{room.sid}/join", headers=as_token)
    assert refused.status_code == 401
    assert [e.rule for e in await room.refusals()] == ["invalid_token"] * 4


async def test_a_refused_token_is_not_spent_and_cannot_burn_a_real_one(
    room: Room, tmp_path: Path
) -> None:
    clinic = room.clinic
    real = await room.ticket(clinic.specialist)
    jti = tokens.verify(
        clinic.platform.keyring, clinic.platform.settings, real, session_id=room.sid
    ).jti
    # A forger who saw the real token's id signs its own token with that id.
    forger = Keyring.load_or_create(tmp_path / "forger.pem")
    forged, _ = forger.issue(
        subject=f"user:{clinic.specialist.id}",
        username="Dr X",
        issuer=clinic.platform.settings.jwt_issuer,
        audience=clinic.platform.settings.jwt_audience + tokens.AUDIENCE_SUFFIX,
        ttl_s=60,
        extra={"jti": jti, "sid": room.sid, "inst": "", "role": "host", "kind": "", "lang": "en"},
    )
    assert ALREADY_USED not in await room.refused(forged)
    # The real token at another session's socket: refused there, not spent.
    other = await clinic.scheduled()
    assert "another teleconsultation" in await room.refused(real, sid=other["id"])
    # So it still opens its own room, once.
    async with room.open(real) as socket:
        assert (await socket.expect("welcome"))["waiting"] is True
    assert ALREADY_USED in await room.refused(real)
    reasons = [e.reasons[0] for e in await room.refusals()]
    assert len(reasons) == 3 and ALREADY_USED in reasons[2]
    assert all(e.rule == "invalid_token" for e in await room.refusals())
