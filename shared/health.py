"""Liveness and readiness: `/health` answers while the process runs, `/health/ready` checks the database."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from shared.identity.deps import PlatformDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(platform: PlatformDep) -> JSONResponse:
    """The process can serve: its database answers."""
    try:
        async with platform.database.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready; say which
        return JSONResponse(
            {"status": "unavailable", "database": type(exc).__name__}, status_code=503
        )
    return {"status": "ok", "database": "ok"}  # type: ignore[return-value]
