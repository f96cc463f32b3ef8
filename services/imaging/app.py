"""The imaging service's app: it verifies tokens through `shared` and keeps no state of its own yet."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from services.imaging.dicomweb.frames import router as frames
from services.imaging.dicomweb.qido import router as qido
from services.imaging.dicomweb.rendered import router as rendered
from services.imaging.dicomweb.router import router as dicomweb
from services.imaging.dicomweb.wado import router as wado
from services.imaging.forwarding.router import router as forwarding
from services.imaging.reports.router import router as reports
from services.imaging.shares.deidentify import warm
from services.imaging.shares.router import router as shares
from services.imaging.viewer.router import router as viewer
from shared import health
from shared.platform import Platform
from shared.web import make_app

WARM_UP = [warm]
"""Started with the server: the share path's process pool (`shares.deidentify.warm`)."""


def routers() -> list[APIRouter]:
    return [dicomweb, qido, wado, frames, rendered, shares, reports, forwarding, viewer]


def create_app(platform: Platform | None = None) -> FastAPI:
    return make_app(
        "Jisr imaging service", [health.router, *routers()], platform=platform, warm_up=WARM_UP
    )
