"""The embedded platform: every service's routes in one ASGI app, on the same paths as production."""

from __future__ import annotations

from fastapi import FastAPI

from services.imaging import app as imaging
from services.referral import app as referral
from services.teleconsult import app as teleconsult
from shared import health
from shared.platform import Platform
from shared.web import make_app


def create_app(platform: Platform | None = None) -> FastAPI:
    routers = [health.router, *referral.routers(), *imaging.routers(), *teleconsult.routers()]
    return make_app(
        "Jisr",
        routers,
        platform=platform,
        description="Telemedicine and referrals between partner hospitals, governed by their agreements.",
        warm_up=imaging.WARM_UP,
    )
