"""An id no record can have is a clear 4xx, on SQLite and PostgreSQL alike, never a 500."""

from __future__ import annotations

import httpx
import pytest

from shared.identity.models import Role
from tests.factories import Factory

PATHS = [
    "/api/referrals/{id}",
    "/api/institutions/{id}",
    "/api/users/{id}",
    "/api/agreements/{id}",
    "/api/missions/{id}",
    "/api/imaging/shares/{id}",
    "/api/teleconsults/{id}",
]
# Beyond PostgreSQL's INTEGER, beyond SQLite's 64-bit INTEGER, beyond any machine integer.
IDS = [2**31, 2**63, 2**70, -(2**63) - 1]


@pytest.mark.parametrize("path", PATHS)
async def test_an_id_beyond_any_column_is_refused_as_invalid(
    client: httpx.AsyncClient, factory: Factory, path: str
) -> None:
    hospital = await factory.institution()
    user = await factory.user(hospital, Role.REFERRING_PHYSICIAN)
    for value in IDS:
        url = path.format(id=value)
        answer = await client.get(url, headers=factory.headers(user))
        # 404 where the database could look (SQLite holds 2**31), 422 where no column could.
        assert answer.status_code in (404, 422), (url, answer.status_code, answer.text)
        if answer.status_code == 422:
            assert answer.json()["detail"] == "a number in the request is out of range"
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert (await client.get(url)).status_code == 401  # and still no one without a token
