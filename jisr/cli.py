"""The `jisr` command: `run`, `migrate`, `seed`, `worker`, `imaging upload`, `teleconsult-recorder`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from jisr import imaging_upload, serve, topology
from services.teleconsult import recorder as teleconsult_recorder
from shared import logs, migrations
from shared.platform import Platform
from shared.settings import Settings, get_settings


async def _seed(platform: Platform, *, demo: bool) -> None:
    from jisr import seed

    async with platform.database.transaction() as session:
        report = await seed.bootstrap(session, platform.settings)
        if demo:
            await seed.load_demo(session, report)
    await platform.database.dispose()
    settings = platform.settings
    if report.admin_created:
        shown = (
            settings.admin_password
            if settings.environment != "production"
            else "(JISR_ADMIN_PASSWORD)"
        )
        print(f"created user admin with password {shown}", flush=True)
    if demo:
        print(
            f"demo users: <institution>.<role> with password {seed.DEMO_PASSWORD}, for example "
            "oran.referrer, aphp.specialist, kuwait-moh.coordinator, clb.radiologist, setif.auditor",
            flush=True,
        )


def prepare(settings: Settings) -> Platform:
    """Create the data directory, migrate, and seed: what every start does first."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(settings.resolved_database_url)
    platform = Platform.from_settings(settings)
    asyncio.run(_seed(platform, demo=settings.seed_demo))
    return platform


def run(settings: Settings, service: str) -> None:
    import uvicorn
    from fastapi import FastAPI

    from shared import tasks

    platform = prepare(settings)
    tasks.use_platform(platform)
    app = _service_app(service, platform)
    embedded_worker = settings.broker_url.startswith("memory://")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = tasks.EmbeddedWorker() if embedded_worker else None
        if worker:
            worker.start()
        print(
            f"Jisr {service} on http://{settings.host}:{settings.port} (API docs at /docs)",
            flush=True,
        )
        try:
            yield
        finally:
            if worker:
                worker.stop()
            await platform.database.dispose()

    app.router.lifespan_context = lifespan
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        ws_max_size=settings.ws_max_size,
    )


def _service_app(service: str, platform: Platform):  # type: ignore[no-untyped-def]
    if service == "all":
        from jisr.app import create_app
    elif service == "referral":
        from services.referral.app import create_app
    elif service == "imaging":
        from services.imaging.app import create_app
    else:
        from services.teleconsult.app import create_app
    return create_app(platform)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jisr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="serve the platform (all services, or one)")
    run_p.add_argument(
        "--service", choices=["all", "referral", "imaging", "teleconsult"], default="all"
    )
    run_p.add_argument("--port", type=int)
    sub.add_parser("migrate", help="apply database migrations")
    seed_p = sub.add_parser(
        "seed", help="create the operator, admin and (with --demo) the demo data"
    )
    seed_p.add_argument("--demo", action="store_true")
    imaging_upload.add_parser(sub)
    teleconsult_recorder.add_parser(sub)
    serve.add_parser(sub)
    topology.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "imaging":
        return imaging_upload.main(args)
    if args.command == "serve":
        return serve.main(args)
    if args.command == "run-services":
        return topology.main(args)

    settings = get_settings()
    logs.configure(settings.log_level, json_lines=settings.log_json)
    if args.command == "run":
        if args.port:
            settings = settings.model_copy(update={"port": args.port})
        run(settings, args.service)
    elif args.command == "migrate":
        migrations.upgrade(settings.resolved_database_url)
        print("database is at the latest revision")
    elif args.command == "teleconsult-recorder":
        return teleconsult_recorder.main(args, settings)
    elif args.command == "seed":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(_seed(Platform.from_settings(settings), demo=args.demo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
