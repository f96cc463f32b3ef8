"""`jisr serve <service>`: one service's app under uvicorn, as each production container runs it.

Unlike `jisr run` it neither migrates nor seeds (the compose `migrate` step does,
once, before any service starts) and starts no in-process worker (Celery's worker
and beat are their own processes). Readiness checks what that service needs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from typing import Any

from fastapi import FastAPI

from shared import health, logs, tasks
from shared.platform import Platform
from shared.settings import Settings, get_settings

SERVICES = ("referral", "imaging", "teleconsult")
log = logging.getLogger("jisr.serve")


def add_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve one service (production: no migration, no worker)")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--host", help="interface to bind (default JISR_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default JISR_PORT)")
    serve.add_argument(
        "--forwarded-allow-ips",
        default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        help="proxies whose X-Forwarded-* headers are trusted (comma-separated, or *)",
    )


def service_app(service: str, platform: Platform) -> FastAPI:
    """`services.<service>.app:create_app(platform)`, its readiness set to what it needs."""
    if service not in SERVICES:
        raise ValueError(f"no service {service!r}; one of {', '.join(SERVICES)}")
    module = importlib.import_module(f"services.{service}.app")
    app: FastAPI = module.create_app(platform)
    health.use_checks(app, service)
    return app


def main(args: argparse.Namespace, settings: Settings | None = None) -> int:
    import uvicorn

    settings = settings or get_settings()
    logs.configure(settings.log_level, json_lines=settings.log_json)
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        log.warning("JISR_BROKER_URL is %s: tasks sent here reach no worker", settings.broker_url)
    platform = Platform.from_settings(settings)
    tasks.use_platform(platform)
    app = service_app(args.service, platform)
    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=10,
        ws_max_size=settings.ws_max_size,
    )
    return 0
