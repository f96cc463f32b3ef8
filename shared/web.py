"""The FastAPI app every service is built on: problems, request ids, metrics, the platform context."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from shared import logs, metrics, problems
from shared.platform import Platform
from shared.settings import get_settings


def make_app(
    title: str,
    routers: Sequence[APIRouter],
    *,
    platform: Platform | None = None,
    description: str = "",
) -> FastAPI:
    """An app with the given routers; `platform` defaults to one built from the environment."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.platform.database.dispose()

    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)
    app.state.platform = platform or Platform.from_settings(get_settings())
    problems.install(app)
    app.add_middleware(logs.RequestIdMiddleware)
    # Outside the request id's middleware: it sees the 500 that one turns a crash into.
    app.add_middleware(metrics.MetricsMiddleware, service=metrics.service_name(title))
    for router in routers:
        app.include_router(router)
    app.include_router(metrics.router)
    return app
