"""The compose-side configuration of `infra/`, adapted to plain processes on this machine.

Pure functions: each reads one file of `infra/` and changes only what a single
machine needs changed (ports, folders, the database host, loopback), so
`make run-services` runs the configuration that production runs, and a test
can check what was changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

INFRA = Path(__file__).resolve().parents[2] / "infra"
ORTHANC_CONFIGS = {
    "local": INFRA / "orthanc" / "local.json",
    "partner": INFRA / "orthanc" / "partner.json",
}
COTURN_CONF = INFRA / "coturn" / "turnserver.conf"
NGINX_TEMPLATE = INFRA / "nginx" / "jisr.conf.template"
REDIS_CONF = INFRA / "redis" / "redis.conf"
POSTGRESQL_INDEX_PLUGIN = "libOrthancPostgreSQLIndex.so"
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


def orthanc_config(
    which: str,
    *,
    http_port: int,
    dicom_port: int,
    folder: Path,
    postgres: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """`infra/orthanc/<which>.json` on loopback ports, storing under `folder`.

    `postgres` (Host, Port, Database, Username, Password) keeps the PostgreSQL index
    on this machine's server; None drops the plugin (Orthanc then indexes in SQLite).
    Credentials stay `${...}` placeholders that Orthanc fills from its environment.
    """
    config: dict[str, Any] = json.loads(ORTHANC_CONFIGS[which].read_text())
    config.update(
        HttpPort=http_port,
        DicomPort=dicom_port,
        StorageDirectory=str(folder / "storage"),
        IndexDirectory=str(folder / "index"),
        # Only processes of this machine reach it, as only imaging does in compose.
        RemoteAccessAllowed=False,
    )
    if postgres is None:
        config["Plugins"] = [
            p for p in config["Plugins"] if not p.endswith(POSTGRESQL_INDEX_PLUGIN)
        ]
        config.pop("PostgreSQL", None)
    else:
        config["PostgreSQL"] = {**config["PostgreSQL"], **postgres}
    return config


def coturn_conf(*, pidfile: Path, log_file: Path) -> str:
    """`infra/coturn/turnserver.conf` with this run's pid and log files."""
    lines = []
    for line in COTURN_CONF.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "pidfile":
            line = f"pidfile={pidfile}"
        elif key == "log-file":
            line = f"log-file={log_file}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def coturn_args(conf: Path, *, port: int, secret: str, min_port: int, max_port: int) -> list[str]:
    """turnserver's command line: the configuration, loopback only, and the shared secret.

    Peers on this machine are on loopback, which the configuration denies: the one
    exception this machine needs is to allow 127.0.0.1 (the test suite does the same).
    """
    return [
        "-c",
        str(conf),
        f"--static-auth-secret={secret}",
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--min-port={min_port}",
        f"--max-port={max_port}",
        "--allow-loopback-peers",
        "--allowed-peer-ip=127.0.0.1",
    ]


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace `${NAME}` placeholders as the nginx image's envsubst does; nginx's `$vars` stay."""
    missing = sorted(set(_PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise KeyError(f"no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def nginx_server(*, port: int, upstreams: Mapping[str, str]) -> str:
    """The proxy's `server` block of `infra/nginx/jisr.conf.template` for these addresses."""
    return fill(
        NGINX_TEMPLATE.read_text(),
        {
            "PROXY_PORT": f"127.0.0.1:{port}",
            "REFERRAL_UPSTREAM": upstreams["referral"],
            "IMAGING_UPSTREAM": upstreams["imaging"],
            "TELECONSULT_UPSTREAM": upstreams["teleconsult"],
        },
    )


def nginx_main(*, prefix: Path, server_conf: Path, run_as_root: bool) -> str:
    """A whole nginx.conf around the server block: every file nginx writes lives in `prefix`."""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if run_as_root else ""
    return (
        f"{user}worker_processes 1;\n"
        "daemon off;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        "error_log stderr warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"    access_log {prefix / 'access.log'};\n"
        f"{temp}\n"
        f"    include {server_conf};\n"
        "}\n"
    )


def redis_policy() -> str:
    """The `maxmemory-policy` the compose Redis runs with."""
    for line in REDIS_CONF.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "maxmemory-policy":
            return parts[1]
    raise ValueError("infra/redis/redis.conf sets no maxmemory-policy")
