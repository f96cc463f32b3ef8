"""`jisr run-services`: the production topology of docker-compose.yml as processes on this machine.

This machine's PostgreSQL and Redis; three Orthancs (the local hospital's, a
partner's, and the shared one holding the de-identified copies partners read, whose
WADO-RS nginx sends itself) and coturn started from `infra/` adapted to loopback ports; each
service on its own port through `jisr serve`; a Celery worker and beat on
Redis; nginx in front on one port with the same paths as the embedded app.
Migrations and the demo seed run once, as compose's `migrate` step does. Every process
runs with `JISR_ENVIRONMENT=production`, as in compose: the admin's password and the
pseudonym secret are made once and kept in `<dir>/data/secrets.json` (mode 0600).

`running()` is a context manager that starts everything, waits until it is
ready, yields a `Topology` (the URLs, credentials and the processes) and stops
everything in reverse order; the CLI and the test fixtures both use it. Tests
that break things on purpose use `Topology.processes[name]` (`signal`, `stop`,
`start`) and `Topology.wait_ready(name)`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import httpx
import redis

from jisr.topology import configs, credentials, parts
from jisr.topology.processes import (
    Process,
    TopologyError,
    listening,
    wait_until,
)
from shared.settings import Settings

__all__ = [
    "OrthancEndpoint",
    "Topology",
    "TopologyError",
    "add_parser",
    "main",
    "missing_parts",
    "running",
]

log = logging.getLogger("jisr.topology")
PROGRAMS = {"nginx": "nginx", "Orthanc": str(parts.ORTHANC), "turnserver": "turnserver"}
LOCAL_INSTITUTION = "DZ-ORAN-EHU"
"""The demo institution whose originals the local Orthanc keeps."""
PARTNER_INSTITUTION = "FR-PARIS-APHP"
"""The demo partner whose own store the second Orthanc stands for."""
ORTHANC_USERNAME = "jisr"
DEFAULT_POSTGRES = os.environ.get(
    "JISR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def missing_parts() -> list[str]:
    """The programs of the topology this machine lacks (empty when it can run)."""
    missing = [name for name, program in PROGRAMS.items() if shutil.which(program) is None]
    if not (parts.PLUGINS / "libOrthancDicomWeb.so").exists():
        missing.append("orthanc-dicomweb")
    return missing


@dataclass(frozen=True)
class OrthancEndpoint:
    url: str
    username: str
    password: str


@dataclass
class Topology:
    """A running topology: where each part answers and its processes."""

    proxy_url: str
    service_urls: dict[str, str]
    orthancs: dict[str, OrthancEndpoint]
    turn_url: str
    turn_secret: str
    database_url: str
    broker_url: str
    signalling_url: str
    data_dir: Path
    log_dir: Path
    env: dict[str, str]
    worker_hostname: str
    processes: dict[str, Process] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    """Filled in when the topology stops: each process's exit code (negative: by signal)."""

    def wait_ready(self, name: str, timeout_s: float = 60.0) -> None:
        """Wait until the part `name` (a key of `processes`) answers again."""
        process = self.processes[name]
        wait_until(name, self._probe(name), watch=[process], timeout_s=timeout_s)

    def _probe(self, name: str) -> Any:
        if name in self.service_urls:
            return lambda: _http_ok(self.service_urls[name] + "/readyz")
        if name.startswith("orthanc-"):
            o = self.orthancs[name.removeprefix("orthanc-")]
            return lambda: _http_ok(o.url + "/system", auth=(o.username, o.password))
        if name == "proxy":
            return lambda: _http_ok(self.proxy_url + "/healthz")
        if name == "coturn":
            port = int(self.turn_url.rsplit(":", 1)[1].split("?")[0])
            return lambda: listening("127.0.0.1", port)
        if name == "worker":
            return lambda: _worker_answers(self.broker_url, self.worker_hostname)
        return lambda: self.processes[name].alive


def _http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, auth=auth, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _worker_answers(broker_url: str, hostname: str) -> bool:
    from celery import Celery

    probe = Celery("probe", broker=broker_url)
    try:
        return bool(probe.control.ping(destination=[hostname], timeout=0.5))
    except Exception:  # the broker not answering yet is "not ready", not an error
        return False
    finally:
        probe.close()


# -- the shared parts: PostgreSQL and Redis --------------------------------------------------


async def _create_databases(admin_dsn: str, names: list[str], *, fresh: bool) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for name in names:
            if fresh:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_databases(admin_dsn: str, names: list[str]) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _attach_stores(database_url: str, stores: dict[str, str]) -> None:
    """Point the demo institutions' `imaging_store` at this run's Orthancs."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        for code, url in stores.items():
            await conn.execute(
                "UPDATE institutions SET imaging_store = $1 WHERE code = $2", url, code
            )
    finally:
        await conn.close()


def check_redis(url: str) -> list[str]:
    """Warnings about the Redis at `url`: it must answer, and keep tasks (`noeviction`).

    The machine's Redis is not ours to reconfigure: say what is wrong, change nothing.
    """
    client = redis.Redis.from_url(url, socket_connect_timeout=2.0)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise TopologyError(f"Redis at {url} does not answer: {exc}") from exc
    try:
        policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy", "?"))
    except redis.RedisError:
        return [f"could not read Redis's maxmemory-policy at {url} (CONFIG refused)"]
    finally:
        client.close()
    wanted = configs.redis_policy()
    if policy != wanted:
        return [
            f"Redis at {url} runs with maxmemory-policy {policy}: under memory pressure it may "
            f"drop queued tasks; set `maxmemory-policy {wanted}` (infra/redis/redis.conf)"
        ]
    return []


def _flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# -- the topology -----------------------------------------------------------------------------


@contextmanager
def running(
    root: Path,
    *,
    proxy_port: int | None = None,
    database: str = "jisr_services",
    postgres: str = DEFAULT_POSTGRES,
    redis_url: str = "redis://127.0.0.1:6379",
    redis_db: int = 2,
    demo: bool = True,
    fresh: bool = False,
    drop_databases: bool = False,
    timeout_s: float = 90.0,
    environment: Mapping[str, str] | None = None,
) -> Iterator[Topology]:
    """Start the topology under `root` (data, logs, configurations); stop it on exit.

    `database` names the Jisr database (Orthanc's indexes get `<database>_orthanc_*`);
    Redis databases `redis_db` (broker) and `redis_db + 1` (signalling) are emptied first,
    so give each concurrent topology its own. `fresh` drops the databases before;
    `drop_databases` drops them after (tests). `environment` adds `JISR_*` settings to every
    process and to the seed (test aids such as `JISR_RECORDER_HOST_ADDRESS` or the admin's
    password); the machine's own `JISR_*` variables never reach the topology.
    """
    missing = missing_parts()
    if missing:
        raise TopologyError(f"missing on this machine: {', '.join(missing)}")
    folders = parts.Folders(root.resolve())
    folders.make()
    names = [database, *(f"{database}_orthanc_{which}" for which in parts.ORTHANCS)]
    try:
        asyncio.run(_create_databases(postgres, names, fresh=fresh))
    except (OSError, asyncpg.PostgresError) as exc:
        raise TopologyError(f"PostgreSQL at {postgres} refused: {exc}") from exc
    broker_url = f"{redis_url.rstrip('/')}/{redis_db}"
    signalling_url = f"{redis_url.rstrip('/')}/{redis_db + 1}"
    with ExitStack() as stack:
        # Registered first, run last: the databases go once every process has stopped.
        if drop_databases:
            stack.callback(lambda: asyncio.run(_drop_databases(postgres, names)))
            stack.callback(_flush, signalling_url)
            stack.callback(_flush, broker_url)
        warnings = check_redis(broker_url)
        for url in (broker_url, signalling_url):
            _flush(url)
        base = postgres.rsplit("/", 1)[0]
        topology = _plan(
            folders,
            parts.Ports.pick(proxy_port),
            database_url=base.replace("postgresql://", "postgresql+asyncpg://") + f"/{database}",
            broker_url=broker_url,
            signalling_url=signalling_url,
            demo=demo,
            environment=environment or {},
        )
        topology.warnings += warnings
        # Migrations and the seed, once, before any service: compose's `migrate` step (here in
        # this process, which has the code loaded already: two fresh interpreters cost seconds).
        _migrate_and_seed(topology.env)
        stores = [*(f"orthanc-{which}" for which in parts.ORTHANCS), "coturn"]
        rest = [*parts.SERVICES, "worker", "beat", "proxy"]
        stack.callback(
            _stop_all, [topology.processes[n] for n in stores + rest], topology.exit_codes
        )
        _start(topology, stores, timeout_s)
        asyncio.run(
            _attach_stores(
                topology.database_url,
                {
                    LOCAL_INSTITUTION: topology.orthancs["local"].url,
                    PARTNER_INSTITUTION: topology.orthancs["partner"].url,
                },
            )
        )
        _start(topology, rest, timeout_s)
        yield topology


def _plan(
    folders: parts.Folders,
    ports: parts.Ports,
    *,
    database_url: str,
    broker_url: str,
    signalling_url: str,
    demo: bool,
    environment: Mapping[str, str],
) -> Topology:
    """The topology's addresses, secrets, environment and (not yet started) processes."""
    orthanc_password = secrets.token_urlsafe(18)
    # The shared Orthanc's own credentials: nginx holds them, and they open no original.
    shared_password = secrets.token_urlsafe(18)
    logins = {
        which: (ORTHANC_USERNAME, shared_password if which == "shared" else orthanc_password)
        for which in parts.ORTHANCS
    }
    turn_secret = secrets.token_urlsafe(24)
    turn_url = f"turn:127.0.0.1:{ports.turn}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("JISR_")},
        # Production, as compose: the development secrets are refused, so real ones are made.
        "JISR_ENVIRONMENT": "production",
        **credentials.lasting(folders.data),
        "JISR_DATABASE_URL": database_url,
        "JISR_BROKER_URL": broker_url,
        "JISR_SIGNALLING_URL": signalling_url,
        "JISR_DATA_DIR": str(folders.data),
        "JISR_ORTHANC_USERNAME": ORTHANC_USERNAME,
        "JISR_ORTHANC_PASSWORD": orthanc_password,
        "JISR_TURN_SECRET": turn_secret,
        "JISR_TURN_URLS": json.dumps([f"{turn_url}?transport=udp", f"{turn_url}?transport=tcp"]),
        "JISR_LOG_JSON": "true",
        "JISR_SEED_DEMO": "true" if demo else "false",
        # The worker spawns the consented recorder, which joins on the teleconsult service's
        # own socket (compose's worker: ws://teleconsult:8000).
        "JISR_RECORDER_SIGNALLING_URL": f"ws://127.0.0.1:{ports.services['teleconsult']}",
        "ORTHANC_DB_PASSWORD": "",
        "SHARED_ORTHANC_DB_PASSWORD": "",
        "PYTHONUNBUFFERED": "1",
        # De-identified copies in the shared Orthanc; nginx sends their WADO-RS bytes.
        **configs.shared_orthanc_env(
            f"http://127.0.0.1:{ports.orthanc_http['shared']}", *logins["shared"]
        ),
        **environment,
    }
    topology = Topology(
        proxy_url=f"http://127.0.0.1:{ports.proxy}",
        service_urls={name: f"http://127.0.0.1:{port}" for name, port in ports.services.items()},
        orthancs={
            which: OrthancEndpoint(f"http://127.0.0.1:{port}", *logins[which])
            for which, port in ports.orthanc_http.items()
        },
        turn_url=turn_url,
        turn_secret=turn_secret,
        database_url=database_url,
        broker_url=broker_url,
        signalling_url=signalling_url,
        data_dir=folders.data,
        log_dir=folders.logs,
        env=env,
        worker_hostname=f"run-services-{secrets.token_hex(4)}@localhost",
    )
    index = None
    if (parts.PLUGINS / configs.POSTGRESQL_INDEX_PLUGIN).exists():
        pg = urlsplit(database_url.replace("+asyncpg", ""))
        index = {
            which: {
                "Host": pg.hostname or "127.0.0.1",
                "Port": pg.port or 5432,
                "Database": f"{pg.path.lstrip('/')}_orthanc_{which}",
                "Username": pg.username or "postgres",
                "Password": pg.password or "",
                "Lock": False,
            }
            for which in parts.ORTHANCS
        }
    else:
        topology.warnings.append(
            "orthanc-postgresql is not installed: the Orthancs index in SQLite here"
        )
    topology.processes = {
        **parts.orthancs(folders, ports, env, index),
        "coturn": parts.coturn(folders, ports, env, turn_secret),
        **parts.applications(folders, ports, env, topology.worker_hostname),
        "proxy": parts.proxy(folders, ports, env),
    }
    return topology


def _start(topology: Topology, names: list[str], timeout_s: float) -> None:
    """Start these parts together, then wait for each to answer."""
    for name in names:
        topology.processes[name].start()
    for name in names:
        topology.wait_ready(name, timeout_s)


def _migrate_and_seed(env: dict[str, str]) -> None:
    """`jisr migrate && jisr seed [--demo]` on the topology's database and data directory."""
    from jisr.cli import prepare

    settings = Settings(
        environment=env["JISR_ENVIRONMENT"],
        database_url=env["JISR_DATABASE_URL"],
        data_dir=Path(env["JISR_DATA_DIR"]),
        seed_demo=env["JISR_SEED_DEMO"] == "true",
        admin_password=env["JISR_ADMIN_PASSWORD"],
        pseudonym_secret=env["JISR_PSEUDONYM_SECRET"],
        turn_secret=env["JISR_TURN_SECRET"],
    )
    prepare(settings)


def _stop_all(processes: list[Process], exit_codes: dict[str, int | None]) -> None:
    """Stop in reverse start order; a second Ctrl-C must not leave half of them running."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        for process in reversed(processes):
            exit_codes[process.name] = process.stop()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


# -- the command --------------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "run-services",
        help="run the production topology as processes here (PostgreSQL, Redis, Orthanc, coturn, nginx)",
    )
    cmd.add_argument("--port", type=int, default=8080, help="the proxy's port (default 8080)")
    cmd.add_argument("--dir", type=Path, default=Path("var/run-services"))
    cmd.add_argument("--database", default="jisr_services")
    cmd.add_argument("--postgres", default=DEFAULT_POSTGRES, help="an administrator's DSN")
    cmd.add_argument("--redis", default="redis://127.0.0.1:6379")
    cmd.add_argument("--redis-db", type=int, default=2, help="broker; signalling uses the next")
    cmd.add_argument("--fresh", action="store_true", help="drop the databases first")


def main(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with running(
            args.dir,
            proxy_port=args.port,
            database=args.database,
            postgres=args.postgres,
            redis_url=args.redis,
            redis_db=args.redis_db,
            fresh=args.fresh,
        ) as topology:
            _print_urls(topology)
            try:
                while not stop.wait(1.0):
                    for process in topology.processes.values():
                        process.check()
            except KeyboardInterrupt:
                pass
            print("stopping ...", flush=True)
    except TopologyError as exc:
        print(f"run-services: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("stopped", flush=True)
    return 0


def _print_urls(t: Topology) -> None:
    lines = [
        f"Jisr (production topology) on {t.proxy_url}  (pages at /login, API docs per service below)",
        *(
            f"  {name:<12} {url}  (/readyz, /metrics, /docs)"
            for name, url in t.service_urls.items()
        ),
        *(f"  orthanc-{w:<4} {o.url}  (user {o.username})" for w, o in t.orthancs.items()),
        f"  coturn       {t.turn_url}",
        f"  database     {t.database_url}",
        f"  secrets      {t.data_dir / credentials.FILE}  (admin's password: JISR_ADMIN_PASSWORD)",
        f"  broker       {t.broker_url}   signalling {t.signalling_url}",
        f"  logs         {t.log_dir}",
        *(f"  warning: {w}" for w in t.warnings),
        "Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)
