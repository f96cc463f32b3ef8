"""Production sign-in: tokens from an external OIDC issuer, checked through its published JWKS.

The issuer's key set is served by a real HTTP server on a loopback port.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm

from jisr.app import create_app
from shared.identity.models import Role
from shared.platform import Platform
from shared.settings import Settings
from tests.conftest import make_settings
from tests.factories import Factory

ISSUER = "https://login.partner-hospital.test/realms/jisr"


class Issuer:
    """A key set that can rotate, served over HTTP like an identity provider's jwks_uri."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.rotate("key-1")

    def rotate(self, kid: str) -> None:
        self.keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048)}

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def token(self, username: str, *, kid: str | None = None, **claims: Any) -> str:
        kid = kid or next(iter(self.keys))
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": "jisr",
            "sub": f"oidc|{username}",
            "preferred_username": username,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            **claims,
        }
        key = self.keys.get(kid) or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[tuple[Issuer, str]]:
    state = Issuer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(state.jwks()).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/protocol/openid-connect/certs"
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(
    tmp_path: Path, signing_key: Path, sqlite_url: str, issuer: tuple[Issuer, str]
) -> Settings:
    return make_settings(
        tmp_path,
        signing_key,
        sqlite_url,
        oidc_issuer=ISSUER,
        oidc_jwks_url=issuer[1],
        oidc_audience="jisr",
    )


async def test_a_token_from_the_issuer_is_accepted_for_a_known_user(
    client: httpx.AsyncClient, factory: Factory, issuer: tuple[Issuer, str]
) -> None:
    idp, _ = issuer
    hospital = await factory.institution()
    user = await factory.user(hospital, Role.SPECIALIST, username="dr.saidi")
    response = await client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {idp.token('dr.saidi')}"}
    )
    assert response.status_code == 200
    assert response.json()["id"] == user.id


async def test_tokens_the_issuer_did_not_sign_for_us_are_refused(
    client: httpx.AsyncClient, factory: Factory, issuer: tuple[Issuer, str]
) -> None:
    idp, _ = issuer
    hospital = await factory.institution()
    user = await factory.user(hospital, Role.SPECIALIST, username="dr.saidi")
    refused = {
        "unknown user": idp.token("dr.nobody"),
        "another audience": idp.token("dr.saidi", aud="another-app"),
        "another issuer": idp.token("dr.saidi", iss="https://elsewhere.test"),
        "expired": idp.token("dr.saidi", exp=int(time.time()) - 600, iat=int(time.time()) - 900),
        "unpublished key": idp.token("dr.saidi", kid="not-in-jwks"),
        "our own token": factory.token(user),
        "no username": idp.token("dr.saidi", preferred_username=None),
    }
    for label, token in refused.items():
        response = await client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, label


async def test_a_rotated_issuer_key_is_picked_up(
    client: httpx.AsyncClient, app: FastAPI, factory: Factory, issuer: tuple[Issuer, str]
) -> None:
    idp, _ = issuer
    platform: Platform = app.state.platform
    assert platform.oidc is not None
    platform.oidc.refresh_interval_s = 0
    await factory.user(await factory.institution(), Role.SPECIALIST, username="dr.saidi")
    first = await client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {idp.token('dr.saidi')}"}
    )
    assert first.status_code == 200
    idp.rotate("key-2")
    second = await client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {idp.token('dr.saidi')}"}
    )
    assert second.status_code == 200


async def test_password_sign_in_is_off_when_an_issuer_is_configured(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/auth/token", data={"username": "admin", "password": "admin"})
    assert response.status_code == 400
    assert ISSUER in response.json()["detail"]


def test_the_app_builds_its_verifier_from_settings(settings: Settings) -> None:
    app = create_app(Platform.from_settings(settings))
    oidc = app.state.platform.oidc
    assert oidc is not None and oidc.issuer == ISSUER and oidc.audience == "jisr"
