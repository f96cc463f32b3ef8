"""The referral service's app; it also serves the registry, identity and audit APIs."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from services.referral.referrals import router as referrals
from shared import audit_routes, health
from shared.identity import router as identity
from shared.platform import Platform
from shared.registry import router as registry
from shared.web import make_app


def routers() -> list[APIRouter]:
    return [identity.router, registry.router, audit_routes.router, referrals.router]


def create_app(platform: Platform | None = None) -> FastAPI:
    return make_app("Jisr referral service", [health.router, *routers()], platform=platform)
