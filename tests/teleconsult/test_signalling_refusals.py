"""The socket with the sessions service behind it: refused joins (audited) and the host's end.

Sessions are scheduled and joined through the REST API (`Clinic`), on SQLite
and PostgreSQL; the signalling app (default hooks: `decide()` again at the
socket, TURN credentials, `sessions.end`, `mark_left`) is served by uvicorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.teleconsult import tokens
from services.teleconsult.signalling.bus import MemoryBus
from services.teleconsult.signalling.router import Signalling, install, router
from services.teleconsult.tokens import JoinGrant, RoomRole
from shared.audit import AuditEvent
from shared.identity.models import User
from shared.identity.tokens import Keyring
from shared.web import make_app
from tests.teleconsult.conftest import STUN, TURN, Clinic
from tests.teleconsult.peers import SignallingClient, join_token, serve

ORIGIN = "https://jisr.example.org"


@dataclass
class Door:
    clinic: Clinic
    base: str
    sid: int

    async def ticket(self, user: User) -> str:
        response = await self.clinic.join(user, self.sid)
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    def open(self, token: str, *, sid: int | None = None, origin: str | None = None) -> Any:
        return SignallingClient.open(
            self.base, self.sid if sid is None else sid, token, origin=origin
        )

    async def refused(
        self, token: str, *, sid: int | None = None, origin: str | None = None
    ) -> str:
        """Open a socket that must be refused before joining; returns the close reason."""
        async with self.open(token, sid=sid, origin=origin) as client:
            assert await client.wait_closed() == 1008
            assert client.nothing_pending()  # no welcome, nothing of the room
            reason: str = client.close_reason
            return reason

    async def refusal(self) -> AuditEvent:
        events = [e for e in await self.clinic.audit("teleconsult.join") if e.outcome == "refused"]
        assert len(events) == 1, [(e.rule, e.reasons) for e in events]
        event = events[0]
        assert (event.resource_type, event.resource_id) == ("teleconsult", str(self.sid))
        return event


@pytest.fixture
async def door(clinic: Clinic) -> AsyncIterator[Door]:
    platform = clinic.platform
    platform.settings.allowed_origins = [ORIGIN]
    app = make_app("signalling with sessions", [router], platform=platform)
    install(app, Signalling(platform, MemoryBus()))
    created = await clinic.scheduled()
    async with serve(app) as base:
        yield Door(clinic, base, created["id"])


async def test_joined_through_the_api_the_host_admits_and_ends_and_the_session_records_it(
    door: Door,
) -> None:
    clinic = door.clinic
    host_token, guest_token = (
        await door.ticket(clinic.referrer),
        await door.ticket(clinic.specialist),
    )
    async with door.open(host_token) as host, door.open(guest_token, origin=ORIGIN) as guest:
        welcome = await host.expect("welcome")
        assert welcome["peer_id"] == f"user:{clinic.referrer.id}" and welcome["role"] == "host"
        stun, relay = welcome["ice_servers"]
        assert stun == {"urls": [STUN]}
        assert relay["urls"] == [TURN] and relay["username"].endswith(f":user:{clinic.referrer.id}")
        assert (await guest.expect("welcome"))["waiting"] is True
        joined = await host.expect("peer-joined")
        assert joined["name"] == clinic.specialist.display_name and joined["kind"] == "specialist"
        await host.send({"type": "admit", "peer_id": joined["peer_id"]})
        await guest.expect("admitted")
        await guest.send({"type": "end"})
        assert (await guest.expect("error"))["code"] == "not_allowed"
        await guest.send({"type": "leave"})
        await host.expect("peer-left", peer_id=joined["peer_id"])
        read = (await clinic.get(clinic.referrer, f"/api/teleconsults/{door.sid}")).json()
        left = {p["user_id"]: p["left_at"] for p in read["participants"]}
        assert left[clinic.specialist.id] is not None and left[clinic.referrer.id] is None
        await host.send({"type": "end", "outcome": "completed", "note": "surgery in March"})
        ended = await host.expect("ended")
        assert ended["outcome"] == "completed" and ended["by"] == f"user:{clinic.referrer.id}"
        assert await host.wait_closed() == 1000
    read = (await clinic.get(clinic.referrer, f"/api/teleconsults/{door.sid}")).json()
    assert (read["status"], read["outcome"]) == ("ended", "completed")
    assert await clinic.usage(door.sid) == ["consumed"]
    # The session is over: a token still in its lifetime opens nothing.
    refused = await door.refused(await _late_token(door))
    assert "ended" in refused
    assert (await door.refusal()).rule == "session_ended"


async def _late_token(door: Door) -> str:
    return join_token(door.clinic.platform, door.sid, f"user:{door.clinic.specialist.id}")


async def test_an_end_the_sessions_service_refuses_is_an_error_and_the_room_goes_on(
    door: Door,
) -> None:
    clinic = door.clinic
    async with door.open(await door.ticket(clinic.referrer)) as host:
        await host.expect("welcome")
        await host.send({"type": "end", "outcome": "completed"})
        await host.expect("ended")  # the first join started the clock: completed is fine
    # A host whose session never started cannot call it completed.
    other = await clinic.scheduled()
    token = join_token(
        clinic.platform, other["id"], f"user:{clinic.referrer.id}", role=RoomRole.HOST
    )
    async with door.open(token, sid=other["id"]) as host:
        await host.expect("welcome")
        await host.send({"type": "end", "outcome": "completed"})
        error = await host.expect("error")
        assert error["code"] == "end_failed" and "nobody joined" in error["detail"]
        await host.send({"type": "chat", "text": "still open"})
        assert host.close_code is None
    rules = await clinic.refusals("teleconsult.end")
    assert rules == ["never_started"]


async def test_an_expired_join_token_is_refused_and_audited(door: Door) -> None:
    clinic = door.clinic
    token = join_token(
        clinic.platform, door.sid, f"user:{clinic.referrer.id}", role=RoomRole.HOST, ttl_s=-120
    )
    assert "expired" in (await door.refused(token)).lower()
    event = await door.refusal()
    assert event.rule == "invalid_token" and "expired" in event.reasons[0].lower()


async def test_a_join_token_for_another_session_is_refused_and_audited(door: Door) -> None:
    clinic = door.clinic
    other = await clinic.scheduled()
    token = join_token(
        clinic.platform, other["id"], f"user:{clinic.referrer.id}", role=RoomRole.HOST
    )
    assert "another" in await door.refused(token)
    event = await door.refusal()
    assert event.rule == "invalid_token" and "another teleconsultation" in event.reasons[0]


async def test_a_forged_join_token_is_refused_and_audited(door: Door, tmp_path: Path) -> None:
    clinic = door.clinic
    forger = Keyring.load_or_create(tmp_path / "forger.pem")
    grant = JoinGrant(
        door.sid, f"user:{clinic.referrer.id}", "Dr X", "EPH", RoomRole.HOST, "referring", "fr"
    )
    forged, _ = tokens.issue(forger, clinic.platform.settings, grant, ttl_s=60)
    await door.refused(forged)
    assert (await door.refusal()).rule == "invalid_token"
    # An access token is not a join token either, nor is no token at all.
    await door.refused(
        clinic.factory.headers(clinic.referrer)["Authorization"].removeprefix("Bearer ")
    )
    await door.refused("")
    events = [e for e in await clinic.audit("teleconsult.join") if e.outcome == "refused"]
    assert [e.rule for e in events] == ["invalid_token"] * 3


async def test_a_token_of_an_institution_no_longer_entitled_is_refused_at_the_socket(
    door: Door,
) -> None:
    clinic = door.clinic
    token = await door.ticket(clinic.specialist)  # issued while the agreement was active
    await clinic.set_agreement_status("suspended")
    await door.refused(token)
    event = await door.refusal()
    assert event.rule == "agreement_suspended" and event.reasons
    assert (event.actor_id, event.institution_id) == (clinic.specialist.id, clinic.aphp.id)
    assert event.counterpart_id == clinic.ouargla.id


async def test_a_cancelled_session_refuses_its_outstanding_tokens(door: Door) -> None:
    clinic = door.clinic
    # Minted, not joined: a session someone joined is in progress and cannot be cancelled.
    token = join_token(clinic.platform, door.sid, f"user:{clinic.specialist.id}")
    cancelled = await clinic.post(
        clinic.referrer, f"/api/teleconsults/{door.sid}/cancel", {"reason": "moved"}
    )
    assert cancelled.status_code == 200, cancelled.text
    await door.refused(token)
    assert (await door.refusal()).rule == "session_cancelled"


async def test_a_page_of_another_origin_is_refused_and_audited(door: Door) -> None:
    clinic = door.clinic
    token = await door.ticket(clinic.referrer)
    await door.refused(token, origin="https://evil.example")
    event = await door.refusal()
    assert event.rule == "origin_not_allowed" and event.details["origin"] == "https://evil.example"
    async with door.open(token, origin=ORIGIN) as allowed:
        assert (await allowed.expect("welcome"))["role"] == "host"


async def test_an_app_given_only_the_router_builds_its_signalling_from_settings(
    clinic: Clinic,
) -> None:
    app = make_app("teleconsult", [router], platform=clinic.platform)
    token = join_token(clinic.platform, 999, f"user:{clinic.referrer.id}", role=RoomRole.HOST)
    async with serve(app) as base, SignallingClient.open(base, 999, token) as client:
        assert await client.wait_closed() == 1008
    assert isinstance(app.state.signalling.bus, MemoryBus)  # signalling_url = "memory://"
    assert await clinic.refusals("teleconsult.join") == ["not_visible"]
