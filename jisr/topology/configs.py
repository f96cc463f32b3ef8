"""The compose-side configuration of `infra/`, adapted to plain processes on this machine.

Pure functions: each reads one file of `infra/` and changes only what a single
machine needs changed (ports, folders, the database host, loopback), so
`make run-services` runs the configuration that production runs, and a test
can check what was changed.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

INFRA = Path(__file__).resolve().parents[2] / "infra"
ORTHANC_CONFIGS = {
    "local": INFRA / "orthanc" / "local.json",
    "partner": INFRA / "orthanc" / "partner.json",
    "shared": INFRA / "orthanc" / "shared.json",
}
"""The originals of the local hospital, a partner's own store, and the de-identified copies
partners read (JISR_SHARED_STORE_URL), each an Orthanc of its own."""
COTURN_CONF = INFRA / "coturn" / "turnserver.conf"
NGINX_TEMPLATE = INFRA / "nginx" / "jisr.conf.template"
REDIS_CONF = INFRA / "redis" / "redis.conf"
POSTGRESQL_INDEX_PLUGIN = "libOrthancPostgreSQLIndex.so"
ACCEL_REDIRECT = "/_jisr/shared-store/"
"""The template's internal location for the shared Orthanc's WADO-RS: the value of
`JISR_IMAGING_ACCEL_REDIRECT` when nginx is in front of a shared Orthanc."""
NO_SHARED_STORE = "127.0.0.1:9 down"
"""The shared store's upstream when the shared copies are files: nginx never sends there."""
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


def shared_orthanc_env(url: str, username: str, password: str) -> dict[str, str]:
    """The services' `JISR_*` settings for a shared Orthanc whose WADO-RS nginx sends."""
    return {
        "JISR_SHARED_STORE_URL": url,
        "JISR_SHARED_STORE_USERNAME": username,
        "JISR_SHARED_STORE_PASSWORD": password,
        "JISR_IMAGING_ACCEL_REDIRECT": ACCEL_REDIRECT,
    }


def shared_store_proxy(env: Mapping[str, str]) -> dict[str, str]:
    """The template's shared-store values for the services' environment `env`.

    With `JISR_SHARED_STORE_URL` and `JISR_IMAGING_ACCEL_REDIRECT` both set, nginx proxies
    WADO-RS to that Orthanc (host:port) with its Basic credentials; otherwise the upstream
    is down and holds no credentials (the service streams the shared copies itself).
    """
    url = env.get("JISR_SHARED_STORE_URL")
    if not url or env.get("JISR_IMAGING_ACCEL_REDIRECT") != ACCEL_REDIRECT:
        return {"SHARED_STORE_UPSTREAM": NO_SHARED_STORE, "SHARED_STORE_AUTHORIZATION": ""}
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.path.strip("/") or not parts.hostname:
        raise ValueError(f"nginx proxies a shared Orthanc at http://host:port only, not {url}")
    user = env.get("JISR_SHARED_STORE_USERNAME", "")
    password = env.get("JISR_SHARED_STORE_PASSWORD", "")
    basic = base64.b64encode(f"{user}:{password}".encode()).decode() if user else ""
    return {
        "SHARED_STORE_UPSTREAM": f"{parts.hostname}:{parts.port or 80}",
        "SHARED_STORE_AUTHORIZATION": f"Basic {basic}" if basic else "",
    }


def nginx_server(
    *, port: int, upstreams: Mapping[str, str], env: Mapping[str, str] | None = None
) -> str:
    """The proxy's `server` block of `infra/nginx/jisr.conf.template` for these addresses.

    `env` is the services' environment: its shared store, when WADO-RS is redirected to
    it, is the one nginx proxies to (`shared_store_proxy`).
    """
    return fill(
        NGINX_TEMPLATE.read_text(),
        {
            "PROXY_PORT": f"127.0.0.1:{port}",
            "REFERRAL_UPSTREAM": upstreams["referral"],
            "IMAGING_UPSTREAM": upstreams["imaging"],
            "TELECONSULT_UPSTREAM": upstreams["teleconsult"],
            **shared_store_proxy(env or {}),
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
