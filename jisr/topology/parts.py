"""The processes of the topology, each built from `infra/` and the run's ports.

Builders only: they write each part's configuration under the run's folder and
return the `Process` that will run it; `jisr.topology.running` starts them in
order and waits for each.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jisr.topology import configs, credentials
from jisr.topology.processes import Process, free_ports

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("referral", "imaging", "teleconsult")
ORTHANC = Path(os.environ.get("JISR_ORTHANC", "/usr/sbin/Orthanc"))
PLUGINS = Path("/usr/share/orthanc/plugins")
ORTHANCS = ("local", "partner", "shared")
RELAY_PORTS = 40
"""coturn's relay range here: enough for a few calls, from a free port up."""


@dataclass(frozen=True)
class Ports:
    """Every port of one run: free ones, except the proxy's when asked for."""

    proxy: int
    services: dict[str, int]
    orthanc_http: dict[str, int]
    orthanc_dicom: dict[str, int]
    turn: int
    relay: int

    @classmethod
    def pick(cls, proxy: int | None) -> Ports:
        n = len(ORTHANCS)
        p = free_ports(6 + 2 * n)
        return cls(
            proxy=proxy or p[0],
            services=dict(zip(SERVICES, p[1:4], strict=True)),
            orthanc_http=dict(zip(ORTHANCS, p[4 : 4 + n], strict=True)),
            orthanc_dicom=dict(zip(ORTHANCS, p[4 + n : 4 + 2 * n], strict=True)),
            turn=p[4 + 2 * n],
            relay=p[5 + 2 * n],
        )


@dataclass(frozen=True)
class Folders:
    """Where one run keeps its configuration, data and logs."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def make(self) -> None:
        for folder in (self.conf, self.data, self.logs):
            folder.mkdir(parents=True, exist_ok=True)


def orthancs(
    folders: Folders,
    ports: Ports,
    env: Mapping[str, str],
    postgres: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, Process]:
    """The Orthancs from `infra/orthanc/`; `postgres` is each one's index database, or None."""
    made = {}
    for which in ORTHANCS:
        folder = folders.root / f"orthanc-{which}"
        folder.mkdir(exist_ok=True)
        config = configs.orthanc_config(
            which,
            http_port=ports.orthanc_http[which],
            dicom_port=ports.orthanc_dicom[which],
            folder=folder,
            postgres=postgres[which] if postgres else None,
        )
        path = folders.conf / f"orthanc-{which}.json"
        path.write_text(json.dumps(config, indent=2))
        name = f"orthanc-{which}"
        made[name] = Process(name, [str(ORTHANC), str(path)], env, folders.logs / f"{name}.log")
    return made


def coturn(folders: Folders, ports: Ports, env: Mapping[str, str], secret: str) -> Process:
    """coturn from `infra/coturn/turnserver.conf` on loopback."""
    conf = folders.conf / "turnserver.conf"
    conf.write_text(
        configs.coturn_conf(
            pidfile=folders.root / "turnserver.pid", log_file=folders.logs / "coturn.log"
        )
    )
    args = configs.coturn_args(
        conf,
        port=ports.turn,
        secret=secret,
        min_port=ports.relay,
        max_port=ports.relay + RELAY_PORTS,
    )
    return Process("coturn", ["turnserver", *args], env, folders.logs / "coturn.out")


def applications(
    folders: Folders, ports: Ports, env: Mapping[str, str], worker_hostname: str
) -> dict[str, Process]:
    """The three services by `jisr serve`, and Celery's worker and beat: compose's commands."""
    python = sys.executable
    made = {
        name: Process(
            name,
            [python, "-m", "jisr.cli", "serve", name, "--host", "127.0.0.1", "--port", str(port)],
            env,
            folders.logs / f"{name}.log",
            cwd=ROOT,
        )
        for name, port in ports.services.items()
    }
    celery = [python, "-m", "celery", "-A", "shared.tasks"]
    made["worker"] = Process(
        "worker",
        [
            *celery,
            "worker",
            "--queues=jisr",
            "--loglevel=INFO",
            "--concurrency=2",
            "--without-gossip",
            "--without-mingle",
            f"--hostname={worker_hostname}",
        ],
        env,
        folders.logs / "worker.log",
        cwd=ROOT,
    )
    made["beat"] = Process(
        "beat",
        [*celery, "beat", "--loglevel=INFO", f"--schedule={folders.data / 'celerybeat-schedule'}"],
        env,
        folders.logs / "beat.log",
        cwd=ROOT,
    )
    return made


def proxy(folders: Folders, ports: Ports, env: Mapping[str, str]) -> Process:
    """nginx from `infra/nginx/jisr.conf.template`, every file it writes under the run's folder.

    Its configuration holds the shared Orthanc's credentials (WADO-RS is sent from there):
    only this user may read it.
    """
    prefix = folders.root / "nginx"
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / kind).mkdir(parents=True, exist_ok=True)
    server = folders.conf / "jisr.conf"
    credentials.write_private(
        server,
        configs.nginx_server(
            port=ports.proxy,
            upstreams={name: f"127.0.0.1:{port}" for name, port in ports.services.items()},
            env=env,
        ),
    )
    main = folders.conf / "nginx.conf"
    main.write_text(
        configs.nginx_main(prefix=prefix, server_conf=server, run_as_root=os.geteuid() == 0)
    )
    return Process(
        "proxy",
        ["nginx", "-p", str(prefix), "-c", str(main), "-e", "stderr"],
        env,
        folders.logs / "proxy.log",
    )
