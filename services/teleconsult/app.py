"""The teleconsult service's app: sessions over REST; it verifies tokens through `shared`."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from services.teleconsult.pages.router import router as pages_router
from services.teleconsult.sessions.router import router as sessions_router
from services.teleconsult.signalling.router import router as signalling_router
from shared import health
from shared.platform import Platform
from shared.web import make_app


def routers() -> list[APIRouter]:
    return [sessions_router, signalling_router, pages_router]


def create_app(platform: Platform | None = None) -> FastAPI:
    return make_app("Jisr teleconsult service", [health.router, *routers()], platform=platform)
