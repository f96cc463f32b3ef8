"""A lost database connection answers 503 service-unavailable with Retry-After; other errors do not."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from shared import problems


def lost(orig: BaseException, *, invalidated: bool = False) -> DBAPIError:
    return OperationalError("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (ConnectionResetError(104, "reset"), True),
        (lost(asyncpg.exceptions.CannotConnectNowError("starting up")), True),
        (lost(asyncpg.exceptions.AdminShutdownError("terminating connection")), True),
        (lost(asyncpg.exceptions.ConnectionDoesNotExistError("closed")), True),
        (lost(ValueError("anything"), invalidated=True), True),
        (IntegrityError("INSERT", {}, asyncpg.exceptions.UniqueViolationError("dup")), False),
        (lost(asyncpg.exceptions.UndefinedTableError("no such table")), False),
        (ValueError("not a database error"), False),
    ],
)
def test_which_errors_say_the_database_went_away(error: BaseException, unavailable: bool) -> None:
    assert problems.connection_lost(error) is unavailable


def app_raising(error: BaseException) -> FastAPI:
    app = FastAPI()
    problems.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    return app


async def test_a_lost_connection_is_a_retryable_problem_in_the_callers_language() -> None:
    app = app_raising(lost(asyncpg.exceptions.CannotConnectNowError("starting up")))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://jisr.test") as client:
        answer = await client.get("/boom", headers={"Accept-Language": "fr"})

    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert int(answer.headers["retry-after"]) > 0
    body = answer.json()
    assert body["type"] == "urn:jisr:problem:service-unavailable"
    assert body["title"] == "Service momentanément indisponible, réessayez"


async def test_any_other_database_error_is_not_disguised_as_unavailable() -> None:
    error = IntegrityError("INSERT", {}, asyncpg.exceptions.UniqueViolationError("dup"))
    transport = httpx.ASGITransport(app=app_raising(error))
    async with httpx.AsyncClient(transport=transport, base_url="http://jisr.test") as client:
        with pytest.raises(IntegrityError):
            await client.get("/boom")
