"""The teleconsult service's app: it verifies tokens through `shared` and keeps no state of its own yet."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from shared import health
from shared.platform import Platform
from shared.web import make_app


def routers() -> list[APIRouter]:
    return []


def create_app(platform: Platform | None = None) -> FastAPI:
    return make_app("Jisr teleconsult service", [health.router, *routers()], platform=platform)
