"""Signing in, and every way a token must be refused."""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.identity.models import Role
from shared.identity.tokens import LEEWAY_S
from shared.platform import Platform
from shared.problems import InvalidToken
from tests.factories import PASSWORD, Factory


async def test_a_user_signs_in_and_reads_themselves(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    inst = await factory.institution()
    user = await factory.user(inst, Role.SPECIALIST, username="dr.amina")
    response = await client.post("/auth/token", data={"username": "dr.amina", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    me = await client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["id"] == user.id and me.json()["institution_id"] == inst.id


async def test_a_wrong_password_is_refused_and_audited(
    client: httpx.AsyncClient, factory: Factory, platform: Platform
) -> None:
    inst = await factory.institution()
    await factory.user(inst, Role.SPECIALIST, username="dr.karim")
    response = await client.post(
        "/auth/token",
        data={"username": "dr.karim", "password": "nope-nope-nope"},
        headers={"Accept-Language": "fr"},
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["title"] == "Identifiant ou mot de passe incorrect"
    unknown = await client.post("/auth/token", data={"username": "nobody", "password": "x"})
    assert unknown.status_code == 401
    assert unknown.json().get("detail") == response.json().get("detail")  # no hint which was wrong
    events = await _audit(platform, "auth.sign_in")
    assert [(e.actor_username, e.outcome) for e in events] == [
        ("dr.karim", "refused"),
        ("nobody", "refused"),
    ]


async def test_a_sign_in_without_fields_is_a_problem_not_a_crash(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/token",
        content=b"\xff\xfe garbage",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 422
    assert response.json()["type"] == "urn:jisr:problem:validation"


async def test_a_disabled_user_can_neither_sign_in_nor_use_a_token(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    inst = await factory.institution()
    user = await factory.user(inst, Role.SPECIALIST, username="dr.gone", disabled=True)
    assert (
        await client.post("/auth/token", data={"username": "dr.gone", "password": PASSWORD})
    ).status_code == 401
    response = await client.get("/api/users/me", headers=factory.headers(user))
    assert response.status_code == 401
    assert "disabled" in response.json()["detail"]


async def test_tokens_are_refused_when_they_should_be(
    client: httpx.AsyncClient, factory: Factory, platform: Platform
) -> None:
    inst = await factory.institution()
    user = await factory.user(inst, Role.SPECIALIST)
    keyring = platform.keyring
    now = int(time.time())
    base = {
        "sub": str(user.id),
        "iss": "jisr",
        "aud": "jisr",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unsigned = _b64({"alg": "none", "typ": "JWT", "kid": keyring.kid}) + "." + _b64(base) + "."
    hs256 = jwt.encode(
        base,
        "secret-but-symmetric-0123456789abcdef",
        algorithm="HS256",
        headers={"kid": keyring.kid},
    )
    cases = {
        "expired": jwt.encode(
            {**base, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600},
            keyring.private_key,
            algorithm="RS256",
            headers={"kid": keyring.kid},
        ),
        "not valid yet": jwt.encode(
            {**base, "nbf": now + 3600, "exp": now + 7200},
            keyring.private_key,
            algorithm="RS256",
            headers={"kid": keyring.kid},
        ),
        "another audience": factory.token(user, audience="someone-else"),
        "another issuer": factory.token(user, issuer="https://evil.example"),
        "unsigned": unsigned,
        "symmetric algorithm": hs256,
        "unpublished key": jwt.encode(
            base, stranger, algorithm="RS256", headers={"kid": keyring.kid}
        ),
        "unknown key id": jwt.encode(base, stranger, algorithm="RS256", headers={"kid": "other"}),
        "garbage": "not.a.jwt",
    }
    for label, token in cases.items():
        response = await client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, label
        assert response.headers["www-authenticate"] == "Bearer", label
        assert response.json()["type"] == "urn:jisr:problem:invalid-token", label
    rejected = await _audit(platform, "auth.token_rejected")
    assert len(rejected) == len(cases)
    assert (await client.get("/api/users/me")).status_code == 401
    assert (await client.get("/api/users/me", headers=factory.headers(user))).status_code == 200


async def test_the_public_key_is_published_and_verifies_tokens(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    inst = await factory.institution()
    user = await factory.user(inst, Role.SPECIALIST)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    token = factory.token(user)
    key = jwt.PyJWK(jwks["keys"][0])
    assert jwt.get_unverified_header(token)["kid"] == jwks["keys"][0]["kid"]
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="jisr")
    assert claims["sub"] == str(user.id)
    assert "d" not in jwks["keys"][0]  # never the private part


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _audit(platform: Platform, action: str) -> list:  # type: ignore[type-arg]
    from sqlalchemy import select

    from shared.audit import AuditEvent

    async with platform.database.transaction() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return list(rows)


def test_a_token_verified_once_is_still_refused_once_it_expires_or_for_another_audience(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Keyring.verify` remembers signatures it checked, never a token's validity."""
    keyring = platform.keyring
    token, ttl = keyring.issue(subject="7", username="u", issuer="jisr", audience="jisr", ttl_s=60)
    first = keyring.verify(token, issuer="jisr", audience="jisr")
    assert keyring.verify(token, issuer="jisr", audience="jisr") == first
    with pytest.raises(InvalidToken):
        keyring.verify(token, issuer="jisr", audience="jisr:teleconsult-join")
    later = time.time() + ttl + LEEWAY_S + 1
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(InvalidToken):
        keyring.verify(token, issuer="jisr", audience="jisr")
