"""The FastAPI app every service is built on: problems, request ids, metrics, the platform context."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Sequence
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
    warm_up: Sequence[Callable[[], None]] = (),
) -> FastAPI:
    """An app with the given routers; `platform` defaults to one built from the environment.

    `warm_up` runs once the server starts, each in a thread of its own, without holding the
    start up: work the first request would otherwise wait for (a process pool, say).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for work in warm_up:
            threading.Thread(target=work, name=f"jisr-warm-{work.__name__}", daemon=True).start()
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
