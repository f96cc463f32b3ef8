"""Ending a session over REST reaches the people still in its room."""

from __future__ import annotations

from services.teleconsult.app import create_app
from tests.teleconsult.conftest import Clinic
from tests.teleconsult.peers import SignallingClient, serve


async def test_a_rest_end_tells_everyone_in_the_room_and_closes_their_sockets(
    clinic: Clinic,
) -> None:
    sid = (await clinic.scheduled())["id"]
    async with serve(create_app(clinic.platform)) as base:
        joined = await clinic.join(clinic.referrer, sid)
        assert joined.status_code == 200, joined.text
        async with SignallingClient.open(base, sid, joined.json()["token"]) as host:
            await host.expect("welcome")
            # A stranger's end is refused and the room goes on.
            refused = await clinic.post(
                clinic.stranger, f"/api/teleconsults/{sid}/end", {"outcome": "completed"}
            )
            assert refused.status_code == 404
            assert host.nothing_pending()
            ended = await clinic.post(
                clinic.specialist, f"/api/teleconsults/{sid}/end", {"outcome": "no_show"}
            )
            assert ended.status_code == 200, ended.text
            message = await host.expect("ended")
            assert message["outcome"] == "no_show"
            assert message["by"] == f"user:{clinic.specialist.id}"
            assert await host.wait_closed() == 1000
