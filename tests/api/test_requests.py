"""Every request carries an id; unexpected failures are problems, never a traceback."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI

from shared.identity.models import Role
from tests.factories import Factory


async def test_a_request_id_is_echoed_and_a_bad_one_replaced(client: httpx.AsyncClient) -> None:
    kept = await client.get("/health", headers={"X-Request-ID": "support-ticket-42"})
    assert kept.headers["x-request-id"] == "support-ticket-42"
    replaced = await client.get("/health", headers={"X-Request-ID": "bad id; DROP TABLE"})
    assert replaced.headers["x-request-id"] != "bad id; DROP TABLE"
    assert len(replaced.headers["x-request-id"]) == 32


async def test_an_unexpected_error_is_a_problem_with_the_request_id(
    app: FastAPI, factory: Factory
) -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    app.include_router(router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://jisr.test") as client:
        response = await client.get("/boom", headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["request_id"] == "trace-me"
    assert "secret" not in response.text


async def test_problems_speak_the_callers_language(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(await factory.institution(), Role.SPECIALIST)
    for lang, title in (("fr", "Introuvable"), ("ar", "غير موجود"), ("en", "Not found")):
        response = await client.get("/api/agreements/999", headers=factory.headers(user, lang))
        assert response.json()["title"] == title
