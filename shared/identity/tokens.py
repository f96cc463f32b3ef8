"""Access tokens: signed JWTs (RS256) issued here, or OIDC tokens checked through a JWKS.

Our tokens carry `iss`, `aud`, `sub` (the user id), `iat`, `nbf`, `exp`, `jti`
and a `kid` header naming the key, whose public half is published at
`/.well-known/jwks.json` so the other services (and anyone) can verify without
the private key. Verification refuses `alg: none`, any algorithm but the
expected one, unknown key ids, wrong issuer or audience, and tokens outside
their validity window.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from shared.problems import InvalidToken

ALGORITHM = "RS256"
LEEWAY_S = 30
VERIFIED_CACHE = 4096
"""Tokens whose signature `Keyring.verify` remembers (least recently used out first)."""


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    username: str | None
    issuer: str
    expires_at: int
    raw: dict[str, Any]


class Keyring:
    """The signing key (loaded from PEM, generated on first start) and its JWKS."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self.private_key = private_key
        self.public_jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
        self.kid = _thumbprint(self.public_jwk)
        self.public_jwk.update(kid=self.kid, use="sig", alg=ALGORITHM)
        self._verified: OrderedDict[tuple[str, str, str], Claims] = OrderedDict()

    @classmethod
    def load_or_create(cls, path: Path) -> Keyring:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError(f"{path} is not an RSA private key")
            return cls(key)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        return cls(key)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def issue(
        self,
        *,
        subject: str,
        username: str,
        issuer: str,
        audience: str,
        ttl_s: int,
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience,
            "sub": subject,
            "preferred_username": username,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
            **(extra or {}),
        }
        token = jwt.encode(claims, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid})
        return token, ttl_s

    def verify(self, token: str, *, issuer: str, audience: str) -> Claims:
        """The token's claims, or `InvalidToken`.

        A token already verified for the same issuer and audience is taken from a
        bounded cache and only its validity window checked again: the signature
        cannot have changed, and checking it (with parsing the JWT twice) was a
        third of an authorised request's time here (1.5 of a WADO-RS redirect's 6 ms).
        """
        key = (token, issuer, audience)
        cached = self._verified.get(key)
        if cached is not None:
            if cached.expires_at + LEEWAY_S < time.time():
                del self._verified[key]
                raise InvalidToken("the token has expired")
            self._verified.move_to_end(key)
            return cached  # valid when first seen (`nbf` passed), and not expired since
        kid = _header_kid(token)
        if kid != self.kid:
            raise InvalidToken("the token is signed with a key this server did not publish")
        claims = _decode(token, self.private_key.public_key(), issuer=issuer, audience=audience)
        self._verified[key] = claims
        if len(self._verified) > VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return claims


class OidcVerifier:
    """Tokens from an external OIDC issuer, checked against its published JWKS.

    The key set is cached and fetched again when a token names an unknown
    key id (key rotation), at most once a minute.
    """

    def __init__(self, *, issuer: str, jwks_url: str, audience: str, username_claim: str) -> None:
        self.issuer, self.jwks_url, self.audience = issuer, jwks_url, audience
        self.username_claim = username_claim
        self.refresh_interval_s = 60.0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0

    async def _refresh(self) -> None:
        if self._keys and time.monotonic() - self._fetched_at < self.refresh_interval_s:
            return
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(self.jwks_url)
            response.raise_for_status()
        keys: dict[str, jwt.PyJWK] = {}
        for entry in response.json().get("keys", []):
            if entry.get("use", "sig") == "sig" and "kid" in entry:
                try:
                    keys[entry["kid"]] = jwt.PyJWK(entry)
                except jwt.PyJWTError:
                    continue
        self._keys, self._fetched_at = keys, time.monotonic()

    async def verify(self, token: str) -> Claims:
        kid = _header_kid(token)
        if kid not in self._keys:
            try:
                await self._refresh()
            except (httpx.HTTPError, ValueError) as exc:
                raise InvalidToken("the identity provider's keys could not be fetched") from exc
        key = self._keys.get(kid or "")
        if key is None:
            raise InvalidToken("the token is signed with a key the issuer did not publish")
        claims = _decode(
            token,
            key.key,
            issuer=self.issuer,
            audience=self.audience,
            algorithms=[key.algorithm_name] if key.algorithm_name else None,
        )
        username = claims.raw.get(self.username_claim)
        return Claims(
            claims.subject,
            str(username) if username else None,
            claims.issuer,
            claims.expires_at,
            claims.raw,
        )


def _header_kid(token: str) -> str | None:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken("the token is not a well-formed JWT") from exc
    if str(header.get("alg", "")).lower() == "none":
        raise InvalidToken("unsigned tokens are refused")
    kid = header.get("kid")
    return str(kid) if kid is not None else None


def _decode(
    token: str, key: Any, *, issuer: str, audience: str, algorithms: list[str] | None = None
) -> Claims:
    try:
        raw = jwt.decode(
            token,
            key,
            algorithms=algorithms or [ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("the token has expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise InvalidToken("the token is not valid yet") from exc
    except jwt.InvalidAudienceError as exc:
        raise InvalidToken("the token is for another audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise InvalidToken("the token is from another issuer") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the token is not valid: {exc}") from exc
    return Claims(
        str(raw["sub"]), raw.get("preferred_username"), str(raw["iss"]), int(raw["exp"]), raw
    )


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint, used as the key id."""
    import base64
    import hashlib

    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
