"""The runtime context a service needs: settings, database, token keys.

One `Platform` per process, kept on `app.state.platform` and built once at
start; request dependencies and tasks read it rather than globals.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.db import Database
from shared.identity.tokens import Keyring, OidcVerifier
from shared.settings import Settings


@dataclass
class Platform:
    settings: Settings
    database: Database
    keyring: Keyring
    oidc: OidcVerifier | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Platform:
        oidc = None
        if settings.oidc_issuer:
            jwks = (
                settings.oidc_jwks_url
                or settings.oidc_issuer.rstrip("/") + "/.well-known/jwks.json"
            )
            oidc = OidcVerifier(
                issuer=settings.oidc_issuer,
                jwks_url=jwks,
                audience=settings.oidc_audience or settings.jwt_audience,
                username_claim=settings.oidc_username_claim,
            )
        return cls(
            settings=settings,
            database=Database(settings.resolved_database_url, echo=settings.database_echo),
            keyring=Keyring.load_or_create(settings.key_path),
            oidc=oidc,
        )
