"""The referral service's app; it also serves the registry, identity and audit APIs."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from services.referral.missions import router as missions
from services.referral.pages import router as pages
from services.referral.referrals import router as referrals
from services.referral.reports import router as reports
from shared import audit_routes, health
from shared.identity import router as identity
from shared.notifications import router as notifications
from shared.platform import Platform
from shared.registry import router as registry
from shared.web import make_app


def routers() -> list[APIRouter]:
    return [
        identity.router,
        registry.router,
        audit_routes.router,
        referrals.router,
        missions.router,
        reports.router,
        notifications.router,
        pages.router,
    ]


def create_app(platform: Platform | None = None) -> FastAPI:
    return make_app("Jisr referral service", [health.router, *routers()], platform=platform)
