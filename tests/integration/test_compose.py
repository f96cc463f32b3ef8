"""docker-compose.yml and infra/ checked against the code, with no Docker engine.

Every container's command parses with the real `jisr` and `celery` command lines;
every `JISR_*` variable is a setting; the proxy routes every public path of each
service to that service and nginx accepts its configuration; Orthanc, coturn,
Redis and Celery keep their safe settings.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from celery.bin.base import CLIContext
from celery.bin.beat import beat as celery_beat
from celery.bin.worker import worker as celery_worker
from fastapi.routing import APIRoute, APIWebSocketRoute

from jisr import cli, serve
from jisr.topology import TopologyError, check_redis, configs, credentials
from jisr.topology.processes import Process, free_port, listening, wait_until
from shared import health, tasks
from shared.i18n import LANGUAGES, negotiate, translate
from shared.problems import PROBLEM_JSON, RETRY_AFTER_S
from shared.settings import Settings
from tests.conftest import missing_part
from tests.imaging.proxy import running_nginx

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
APP_SERVICES = ("referral", "imaging", "teleconsult")
GIT = shutil.which("git") or "git"
ENV_EXAMPLES = sorted((ROOT / "infra" / "env").glob("*.env.example"))


def command(name: str) -> list[str]:
    cmd = SERVICES[name]["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def steps(argv: list[str]) -> list[list[str]]:
    """The commands of `sh -c "a && b"`, or the one command."""
    if argv[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in argv[2].split("&&")]
    return [argv]


class Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        self.namespace = namespace


def parse_jisr(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """What the real `jisr` command line makes of `argv`, without running it."""
    real = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        raise Parsed(real(self, args, namespace))

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", capture)
        with pytest.raises(Parsed) as parsed:
            cli.main(argv)
    return parsed.value.namespace


def env_file(path: Path) -> dict[str, str]:
    """NAME=value lines, the commented-out examples included."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.strip().removeprefix("#").strip()
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def active_env(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


# -- the containers and their commands ----------------------------------------------------------


def test_the_compose_file_has_every_part_of_the_design() -> None:
    assert set(SERVICES) == {
        "postgres",
        "redis",
        "orthanc",
        "orthanc-partner",
        "orthanc-shared",
        "coturn",
        "migrate",
        *APP_SERVICES,
        "worker",
        "beat",
        "proxy",
    }


@pytest.mark.parametrize("name", APP_SERVICES)
def test_each_service_container_serves_that_service_with_jisr_serve(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = command(name)
    assert argv[0] == "jisr"
    args = parse_jisr(argv[1:], monkeypatch)
    assert args.command == "serve" and args.service == name
    module = importlib.import_module(f"services.{name}.app")
    assert callable(module.create_app)
    assert SERVICES[name]["expose"] == ["8000"]
    assert "/readyz" in str(SERVICES[name]["healthcheck"]["test"])


def test_an_unknown_service_is_refused_by_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SystemExit):
        parse_jisr(["serve", "billing"], monkeypatch)
    with pytest.raises(ValueError, match="no service"):
        serve.service_app("billing", None)  # type: ignore[arg-type]


def test_migrate_runs_jisr_commands_that_exist_and_every_service_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands = steps(command("migrate"))
    assert [c[:2] for c in commands] == [["jisr", "migrate"], ["jisr", "seed"]]
    for argv in commands:
        assert parse_jisr(argv[1:], monkeypatch).command == argv[1]
    assert SERVICES["migrate"]["restart"] == "no"
    for name in (*APP_SERVICES, "worker", "beat"):
        assert SERVICES[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }, name


@pytest.mark.parametrize(
    ("name", "click_command"), [("worker", celery_worker), ("beat", celery_beat)]
)
def test_worker_and_beat_run_the_celery_app_with_options_celery_accepts(
    name: str, click_command: Any
) -> None:
    argv = command(name)
    assert argv[:3] == ["celery", "-A", "shared.tasks"] and argv[3] == name
    app = importlib.import_module(argv[2]).celery_app
    assert app is tasks.celery_app
    obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    ctx = click_command.make_context(name, argv[4:], obj=obj)
    if name == "worker":
        assert ctx.params["queues"] == [tasks.celery_app.conf.task_default_queue]


def test_a_wrong_celery_option_would_be_caught() -> None:
    import click

    obj = CLIContext(app=tasks.celery_app, no_color=True, workdir=None, quiet=True)
    with pytest.raises(click.NoSuchOption):
        celery_worker.make_context("worker", ["--prefetch-everything"], obj=obj)


def test_long_running_containers_have_health_checks() -> None:
    exempt = {"migrate", "beat", "coturn", "proxy"}  # one-shot; no probe; UDP; the edge itself
    for name, spec in SERVICES.items():
        if name not in exempt:
            assert "healthcheck" in spec, name


# -- configuration and secrets -------------------------------------------------------------------


def compose_env_names() -> Iterator[tuple[str, str]]:
    for name, spec in SERVICES.items():
        env = spec.get("environment") or {}
        items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
        for key, _ in items:
            yield name, key
    for path in ENV_EXAMPLES:
        for key in env_file(path):
            yield path.name, key


def test_every_jisr_variable_set_anywhere_is_a_setting() -> None:
    fields = {f"JISR_{name.upper()}" for name in Settings.model_fields}
    seen = [(where, key) for where, key in compose_env_names() if key.startswith("JISR_")]
    assert len(seen) > 10
    unknown = [(where, key) for where, key in seen if key not in fields]
    assert not unknown, f"not settings of shared/settings.py: {unknown}"


def test_the_env_file_examples_make_valid_production_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    values = {}
    for path in ENV_EXAMPLES:
        values.update({k: v for k, v in active_env(path).items() if k.startswith("JISR_")})
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.environment == "production"
    assert settings.broker_url.startswith("redis://redis:")
    assert settings.signalling_url.startswith("redis://redis:")
    assert settings.broker_url != settings.signalling_url
    assert settings.turn_urls and settings.allowed_origins


def test_env_examples_hold_placeholders_and_the_real_files_are_never_committed() -> None:
    referenced = {Path(f).name for spec in SERVICES.values() for f in spec.get("env_file", [])}
    examples = {p.name.removesuffix(".example") for p in ENV_EXAMPLES}
    assert referenced == examples
    for path in ENV_EXAMPLES:
        for key, value in active_env(path).items():
            if re.search(r"PASSWORD|SECRET", key):
                assert value.startswith("CHANGE-ME"), f"{path.name}: {key} is not a placeholder"
        ignored = subprocess.run(  # noqa: S603 - git on our own path
            [GIT, "check-ignore", "-q", str(path.with_suffix(""))], cwd=ROOT, check=False
        )
        assert ignored.returncode == 0, f"{path.with_suffix('').name} is not ignored by git"


def test_the_database_url_agrees_with_the_postgres_container() -> None:
    postgres = active_env(ROOT / "infra" / "env" / "postgres.env.example")
    url = active_env(ROOT / "infra" / "env" / "jisr.env.example")["JISR_DATABASE_URL"]
    expected = (
        f"postgresql+asyncpg://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    assert url == expected


# -- the proxy ---------------------------------------------------------------------------------


def nginx_locations(text: str) -> list[tuple[str, str, str]]:
    """(modifier, pattern, upstream) of each `location` block; upstream "" without proxy_pass."""
    found = []
    for match in re.finditer(r"location\s+(=|~\*|~|\^~)?\s*(\S+)\s*\{", text):
        depth, end = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        body = text[match.end() : end]
        target = re.search(r"proxy_pass\s+http://([^/;\s]+)", body)
        found.append((match.group(1) or "", match.group(2), target.group(1) if target else ""))
    return found


def nginx_route(locations: list[tuple[str, str, str]], path: str) -> str:
    """The upstream nginx picks for `path`: exact, then longest prefix, unless a regex matches."""
    for modifier, pattern, upstream in locations:
        if modifier == "=" and pattern == path:
            return upstream
    prefixes = [loc for loc in locations if loc[0] in ("", "^~") and path.startswith(loc[1])]
    longest = max(prefixes, key=lambda loc: len(loc[1]), default=None)
    if longest is not None and longest[0] == "^~":
        return longest[2]
    for modifier, pattern, upstream in locations:
        python_pattern = pattern.replace("(?<", "(?P<")  # PCRE's named groups
        if modifier in ("~", "~*") and re.search(
            python_pattern, path, re.IGNORECASE if modifier == "~*" else 0
        ):
            return upstream
    return longest[2] if longest else ""


TEMPLATE = configs.NGINX_TEMPLATE.read_text()
LOCATIONS = nginx_locations(TEMPLATE)


def public_paths(service: str) -> list[str]:
    """Every route of the service's routers, with its parameters filled in."""
    module = importlib.import_module(f"services.{service}.app")
    paths = []
    for router in module.routers():
        for route in router.routes:
            if isinstance(route, APIRoute | APIWebSocketRoute):
                paths.append(re.sub(r"\{[^}]+\}", "1", route.path))
    return paths


@pytest.mark.parametrize("service", APP_SERVICES)
def test_the_proxy_routes_every_public_path_of_a_service_to_it(service: str) -> None:
    paths = public_paths(service)
    assert paths
    wrong = {p: nginx_route(LOCATIONS, p) for p in paths if nginx_route(LOCATIONS, p) != service}
    assert not wrong, f"routed elsewhere: {wrong}"


def test_the_design_contract_paths_reach_their_services() -> None:
    expected = {
        "/auth/token": "referral",
        "/api/referrals/7/accept": "referral",
        "/login": "referral",
        "/api/teleconsults": "teleconsult",
        "/api/teleconsults/3/join": "teleconsult",
        "/ws/teleconsults/3": "teleconsult",
        "/teleconsults/3": "teleconsult",
        "/dicomweb/studies": "imaging",
        "/api/imaging/shares/2/report": "imaging",
        "/viewer/shares/2": "imaging",
    }
    assert {p: nginx_route(LOCATIONS, p) for p in expected} == expected
    assert nginx_route(LOCATIONS, "/metrics") == ""  # answered 404 by the proxy itself


def test_the_proxy_upstreams_are_the_compose_services_on_their_port() -> None:
    proxy = SERVICES["proxy"]
    env = proxy["environment"]
    for service in APP_SERVICES:
        host, port = env[f"{service.upper()}_UPSTREAM"].split(":")
        assert host == service and port in SERVICES[service]["expose"]
        assert service in proxy["depends_on"]
        assert set(SERVICES[service]["networks"]) & set(proxy["networks"])
    assert f"{env['PROXY_PORT']}:{env['PROXY_PORT']}" in proxy["ports"]
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", TEMPLATE))
    # The shared store's Basic credentials are made by the container's command (below).
    assert placeholders == set(env) - {"NGINX_ENVSUBST_FILTER"} | {"SHARED_STORE_AUTHORIZATION"}
    flt = env["NGINX_ENVSUBST_FILTER"].replace("$$", "$")
    assert all(re.search(flt, name) for name in placeholders)


def test_the_websocket_location_upgrades_and_bodies_are_capped() -> None:
    blocks = dict(re.findall(r"location\s+(/ws/teleconsults/|/dicomweb/)\s*\{([^}]*)\}", TEMPLATE))
    assert "proxy_set_header Upgrade $http_upgrade" in blocks["/ws/teleconsults/"]
    assert "proxy_set_header Connection $connection_upgrade" in blocks["/ws/teleconsults/"]
    assert "access_log off;" in blocks["/ws/teleconsults/"]  # join tokens are in its URLs

    def size(text: str) -> int:
        number, unit = re.fullmatch(r"(\d+)([kmg]?)", text.lower()).groups()  # type: ignore[union-attr]
        return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]

    server_cap = re.search(r"^\s{4}client_max_body_size\s+(\S+);", TEMPLATE, re.MULTILINE)
    stow_cap = re.search(r"client_max_body_size\s+(\S+);", blocks["/dicomweb/"])
    assert server_cap and stow_cap
    defaults = Settings()
    assert defaults.attachment_max_bytes < size(server_cap.group(1)) <= 100 * 1024**2
    assert size(stow_cap.group(1)) >= defaults.stow_max_bytes


SHARED_ORTHANC_ENV = configs.shared_orthanc_env("http://127.0.0.1:8043", "jisr", 'pa"ss word;')


@pytest.mark.parametrize("env", [{}, SHARED_ORTHANC_ENV], ids=["file-store", "shared-orthanc"])
def test_nginx_accepts_the_configuration(tmp_path: Path, env: dict[str, str]) -> None:
    nginx = shutil.which("nginx")
    if nginx is None:
        missing_part("nginx is not installed: apt install nginx")
    server = tmp_path / "jisr.conf"
    server.write_text(
        configs.nginx_server(
            port=18080,
            upstreams={s: f"127.0.0.1:{8001 + i}" for i, s in enumerate(APP_SERVICES)},
            env=env,
        )
    )
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "tmp" / kind).mkdir(parents=True)
    main = tmp_path / "nginx.conf"
    main.write_text(configs.nginx_main(prefix=tmp_path, server_conf=server, run_as_root=False))
    checked = subprocess.run(  # noqa: S603 - nginx on our own configuration
        [str(nginx), "-t", "-p", str(tmp_path), "-c", str(main), "-e", "stderr"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_a_service_silent_past_the_proxys_timeout_is_a_retryable_504_problem(
    tmp_path: Path,
) -> None:
    """nginx's own 504 (the template's, its read timeout cut to a second for the test) is the
    problem the services answer when they cannot serve, with Retry-After, not nginx's page."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the kernel; nobody ever answers
        upstream = f"127.0.0.1:{silent.getsockname()[1]}"
        upstreams = dict.fromkeys(APP_SERVICES, upstream)

        def quick(conf: str) -> str:
            return conf.replace("proxy_read_timeout 120s;", "proxy_read_timeout 1s;")

        with running_nginx(tmp_path, upstreams, {}, edit=quick) as url:
            answer = httpx.get(url + "/api/referrals", headers={"X-Request-ID": "slow-1"})

    assert answer.status_code == 504
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.headers["retry-after"] == str(RETRY_AFTER_S)
    assert answer.headers["x-request-id"] == "slow-1"
    assert answer.json() == {
        "type": "urn:jisr:problem:service-unavailable",
        "title": translate("problem.service_unavailable", "en"),
        "status": 504,
        "detail": "the service did not answer in time; try again",
        "request_id": "slow-1",
    }


def test_operations_paths_from_another_address_and_metrics_are_nginx_problems(
    tmp_path: Path,
) -> None:
    """A client on 127.0.0.2 is not the proxy's own host: /_ops/ is refused with a 403 problem
    before any service is asked (none listens here); /metrics is a 404 problem for anyone."""
    upstreams = dict.fromkeys(APP_SERVICES, f"127.0.0.1:{free_port()}")
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
    with (
        running_nginx(tmp_path, upstreams, {}) as url,
        httpx.Client(base_url=url, transport=elsewhere) as client,
    ):
        ops = client.get("/_ops/referral/metrics", headers={"X-Request-ID": "ops-1"})
        metrics = client.get("/metrics")
        # Titles in the language the services would pick for the same header.
        languages = [
            "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7",
            "ar,en;q=0.5",
            "de-DE,de;q=0.9,fr;q=0.8",
            "en-GB",
            "es",
        ]
        titled = {
            header: client.get("/metrics", headers={"Accept-Language": header}).json()["title"]
            for header in languages
        }

    assert ops.status_code == 403
    assert ops.headers["content-type"] == PROBLEM_JSON
    assert ops.json()["type"] == "urn:jisr:problem:forbidden"
    assert ops.json()["request_id"] == ops.headers["x-request-id"] == "ops-1"
    assert metrics.status_code == 404
    assert metrics.headers["content-type"] == PROBLEM_JSON
    assert metrics.json()["request_id"] == metrics.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", metrics.json()["request_id"])  # nginx's own
    assert titled == {h: translate("problem.not_found", negotiate(h)) for h in languages}
    assert len(set(titled.values())) == 3


def map_block(head: str) -> dict[str, str]:
    """The entries of the template's `map <head> { key "value"; ... }`."""
    match = re.search(r"^map " + re.escape(head) + r" \{\n(.*?)^\}", TEMPLATE, re.M | re.S)
    assert match, head
    return dict(re.findall(r'^\s+(\S+) "(.*)";$', match.group(1), re.MULTILINE))


def test_nginx_problems_are_the_services_problem_types() -> None:
    """Each `error_page` names a location whose JSON body parses, with the type, title and
    Retry-After the services give the same failure (shared/problems.py)."""
    pages = dict(re.findall(r"^\s{4}error_page (\d+) (@\w+);", TEMPLATE, re.MULTILINE))
    slugs = {
        "403": "forbidden",
        "404": "not_found",
        "413": "payload_too_large",
        **dict.fromkeys(("502", "503", "504"), "service_unavailable"),
    }
    assert set(pages) == set(slugs)
    for status, name in pages.items():
        block = location_block(TEMPLATE, name)
        returned = re.search(r"return (\d+) '(.*)\\n';", block)
        assert returned and returned.group(1) == status, name
        body = json.loads(returned.group(2).replace("$jisr_request_id", "id-1"))
        slug = slugs[status]
        assert body["type"] == f"urn:jisr:problem:{slug.replace('_', '-')}"
        assert body["title"] == f"$jisr_title_{slug}"
        titles = map_block(f"$jisr_problem_lang $jisr_title_{slug}")
        assert titles == {
            ("default" if lang == "en" else lang): translate(f"problem.{slug}", lang)
            for lang in LANGUAGES
        }
        assert body["status"] == int(status) and body["request_id"] == "id-1" and body["detail"]
        assert "default_type application/problem+json;" in block
        assert ("add_header Retry-After 2 always;" in block) == status.startswith("5")
    assert RETRY_AFTER_S == 2


def location_block(text: str, pattern: str) -> str:
    """The body of `location <pattern> { ... }` (the template's `${...}` braces balance)."""
    match = re.search(r"location\s+" + re.escape(pattern) + r"\s*\{", text)
    assert match, f"no location {pattern}"
    depth, end = 1, match.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        end += 1
    return text[match.end() : end - 1]


def test_the_wado_redirect_location_is_internal_and_matches_the_setting() -> None:
    internal = location_block(TEMPLATE, f"{configs.ACCEL_REDIRECT}studies/")
    assert re.search(r"^\s*internal;", internal, re.MULTILINE)
    assert "proxy_pass http://shared_store/dicom-web/studies/;" in internal
    assert "proxy_pass_request_headers off;" in internal  # no client token or cookie to Orthanc
    assert "proxy_intercept_errors on;" in internal  # Orthanc's refusals never reach the client
    assert "add_header Cache-Control no-store always;" in internal
    # The store's credentials are filled in that location only.
    assert TEMPLATE.count("${SHARED_STORE_AUTHORIZATION}") == 2  # the comment and the location
    assert "${SHARED_STORE_AUTHORIZATION}" in internal
    # Only /dicomweb/ answers are followed, and a client cannot send nginx's callback header.
    assert re.search(r"^\s{4}proxy_ignore_headers X-Accel-Redirect;", TEMPLATE, re.MULTILINE)
    dicomweb = location_block(TEMPLATE, "/dicomweb/")
    assert 'proxy_set_header X-Jisr-Store-Status "";' in dicomweb
    assert Settings(imaging_accel_redirect=configs.ACCEL_REDIRECT).imaging_accel_redirect
    assert Settings().imaging_accel_redirect is None  # `jisr run` streams through Python
    example = active_env(ROOT / "infra" / "env" / "shared-store.env.example")
    assert example["JISR_IMAGING_ACCEL_REDIRECT"] == configs.ACCEL_REDIRECT


def test_nginx_proxies_the_shared_orthanc_only_when_wado_is_redirected_to_it() -> None:
    off = configs.shared_store_proxy({"JISR_SHARED_STORE_URL": "http://127.0.0.1:8043"})
    on = configs.shared_store_proxy(SHARED_ORTHANC_ENV)

    assert off == {
        "SHARED_STORE_UPSTREAM": configs.NO_SHARED_STORE,
        "SHARED_STORE_AUTHORIZATION": "",
    }
    assert configs.shared_store_proxy({}) == off
    assert on["SHARED_STORE_UPSTREAM"] == "127.0.0.1:8043"
    assert on["SHARED_STORE_AUTHORIZATION"] == "Basic amlzcjpwYSJzcyB3b3JkOw=="
    with pytest.raises(ValueError, match="host:port only"):
        configs.shared_store_proxy({**SHARED_ORTHANC_ENV, "JISR_SHARED_STORE_URL": "http://o/x"})


SHARED_STORE_ENV = ROOT / "infra" / "env" / "shared-store.env.example"


def test_compose_redirects_wado_to_the_shared_orthanc_the_services_store_copies_in(
    tmp_path: Path,
) -> None:
    """Imaging and the worker store in and read from the shared Orthanc; nginx proxies it with
    the Basic credentials its command makes, the same `shared_store_proxy` makes here."""
    shared = active_env(SHARED_STORE_ENV)
    expected = configs.shared_store_proxy(shared)
    assert expected["SHARED_STORE_UPSTREAM"] == "orthanc-shared:8042"
    for name in ("imaging", "worker", "proxy"):
        assert "infra/env/shared-store.env" in SERVICES[name]["env_file"], name
    proxy = SERVICES["proxy"]
    assert proxy["environment"]["SHARED_STORE_UPSTREAM"] == expected["SHARED_STORE_UPSTREAM"]
    assert proxy["depends_on"]["orthanc-shared"] == {"condition": "service_healthy"}
    # The container's shell line, with compose's `$$` made `$` and the image's entrypoint
    # replaced by one that prints what nginx's envsubst would get.
    assert proxy["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = proxy["command"]
    script = script.replace("$$", "$")
    assert script.endswith("exec /docker-entrypoint.sh nginx -g 'daemon off;'")
    shell, printer = shutil.which("sh"), tmp_path / "entrypoint"
    printer.write_text('#!/bin/sh\nprintf %s "$SHARED_STORE_AUTHORIZATION"\n')
    printer.chmod(0o700)
    for password in (shared["JISR_SHARED_STORE_PASSWORD"], 'p@ss:wörd "$x" ;'):
        made = subprocess.run(  # noqa: S603 - a shell on the compose file's own line
            [str(shell), "-c", script.replace("/docker-entrypoint.sh", str(printer))],
            env={**shared, "JISR_SHARED_STORE_PASSWORD": password, "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            check=True,
        )
        wanted = configs.shared_store_proxy({**shared, "JISR_SHARED_STORE_PASSWORD": password})
        assert made.stdout == wanted["SHARED_STORE_AUTHORIZATION"]


# -- Orthanc, coturn, Redis, Celery: safe defaults -------------------------------------------


ORTHANC_CONTAINERS = {"local": "orthanc", "partner": "orthanc-partner", "shared": "orthanc-shared"}


def container_env(name: str) -> dict[str, str]:
    """What the container's env files set (from their examples)."""
    found: dict[str, str] = {}
    for path in SERVICES[name].get("env_file", []):
        found.update(active_env(ROOT / f"{path}.example"))
    return found


@pytest.mark.parametrize("which", sorted(ORTHANC_CONTAINERS))
def test_each_orthanc_is_locked_down(which: str) -> None:
    config = json.loads(configs.ORTHANC_CONFIGS[which].read_text())
    container = ORTHANC_CONTAINERS[which]
    assert config["AuthenticationEnabled"] is True
    assert config["RemoteAccessAllowed"] is True  # other containers; authentication is on
    assert config["ExecuteLuaEnabled"] is False and config["LuaScripts"] == []
    assert config["RestApiWriteToFileSystemEnabled"] is False
    assert config["HttpDescribeErrors"] is False
    # No credential in the file: Orthanc fills the placeholders from its environment.
    users = config["RegisteredUsers"]
    password = config["PostgreSQL"]["Password"]
    if which == "shared":
        # Credentials of its own: nginx holds them, and they must open no original.
        assert users == {"${JISR_SHARED_STORE_USERNAME}": "${JISR_SHARED_STORE_PASSWORD}"}
        assert password == "${SHARED_ORTHANC_DB_PASSWORD}"
        assert config["DicomServerEnabled"] is False  # copies arrive from imaging alone
        assert not set(container_env(container)) & {"JISR_ORTHANC_PASSWORD", "POSTGRES_PASSWORD"}
    else:
        assert users == {"${JISR_ORTHANC_USERNAME}": "${JISR_ORTHANC_PASSWORD}"}
        assert password == "${ORTHANC_DB_PASSWORD}"
    given = container_env(container)
    for placeholder in re.findall(r"\$\{([A-Z_]+)\}", json.dumps(config)):
        assert placeholder in given, (container, placeholder)
    # Its index database is created on PostgreSQL's first start, owned by the role it uses.
    init = (ROOT / "infra" / "postgres" / "init-orthanc.sh").read_text()
    index = config["PostgreSQL"]
    assert f"CREATE DATABASE {index['Database']} OWNER {index['Username']};" in init
    assert "orthanc-shared.env" in " ".join(SERVICES["postgres"]["env_file"])
    plugins = [Path(p).name for p in config["Plugins"]]
    assert plugins == ["libOrthancDicomWeb.so", configs.POSTGRESQL_INDEX_PLUGIN]
    assert config["DicomWeb"]["Enable"] is True
    assert config["PostgreSQL"]["EnableIndex"] is True


def test_only_imaging_and_the_worker_reach_the_orthancs() -> None:
    stores = COMPOSE["networks"]["stores"]
    assert stores.get("internal") is True
    on_stores = {name for name, spec in SERVICES.items() if "stores" in spec.get("networks", [])}
    assert on_stores == {
        "orthanc",
        "orthanc-partner",
        "orthanc-shared",
        "imaging",
        "worker",
        "postgres",
    }
    for which, name in ORTHANC_CONTAINERS.items():
        assert "ports" not in SERVICES[name]
        mount = SERVICES[name]["volumes"][0]
        assert mount.startswith(f"./infra/orthanc/{which}.json:")
    assert SERVICES["orthanc"]["networks"] == SERVICES["orthanc-partner"]["networks"] == ["stores"]


def test_postgresqls_first_start_gives_each_orthanc_its_index_and_nothing_else(
    tmp_path: Path,
) -> None:
    """infra/postgres/init-orthanc.sh run on a cluster of the test's own, as the image runs it:
    each Orthanc's role reaches the index database its configuration names, and neither
    role reaches another's, nor Jisr's (the shared Orthanc is the one nginx talks to)."""
    from tests.failure.parts import PgCluster, pg_cluster_folder

    cluster = PgCluster(pg_cluster_folder())
    try:
        cluster.init()
        cluster.tool("psql", "-d", "postgres", "-c", "CREATE DATABASE jisr")
        subprocess.run(  # noqa: S603 - the repository's own script
            [shutil.which("sh") or "sh", str(ROOT / "infra" / "postgres" / "init-orthanc.sh")],
            env={
                "PATH": f"{cluster.bin}:{os.environ['PATH']}",
                "PGHOST": "127.0.0.1",
                "PGPORT": str(cluster.port),
                "POSTGRES_USER": "postgres",
                "POSTGRES_DB": "jisr",
                "ORTHANC_DB_PASSWORD": "originals-index",
                "SHARED_ORTHANC_DB_PASSWORD": "shared-index",
            },
            capture_output=True,
            check=True,
        )
        indexes = {
            which: json.loads(path.read_text())["PostgreSQL"]
            for which, path in configs.ORTHANC_CONFIGS.items()
        }
        psql = [str(cluster.bin / "psql"), "-h", "127.0.0.1", "-p", str(cluster.port)]
        owned = {(i["Username"], i["Database"]) for i in indexes.values()}
        for which, index in indexes.items():
            role = index["Username"]
            for database in {i["Database"] for i in indexes.values()} | {"jisr"}:
                connect = subprocess.run(  # noqa: S603 - the cluster's own psql
                    [*psql, "-U", role, "-d", database, "-Atc", "SELECT current_user"],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                own = (role, database) in owned
                assert (connect.returncode == 0) == own, (which, role, database, connect.stderr)
        passwords = cluster.tool(
            "psql",
            "-d",
            "postgres",
            "-Atc",
            "SELECT rolname FROM pg_authid WHERE rolpassword IS NOT NULL ORDER BY rolname",
        )
        assert passwords.split() == sorted({i["Username"] for i in indexes.values()})
    finally:
        cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)


def test_nginx_reaches_the_shared_orthanc_alone_of_the_stores() -> None:
    """The proxy sends WADO-RS from the shared Orthanc: on a network with it and nothing else,
    never on `stores` (the originals, PostgreSQL) nor `backend`."""
    assert COMPOSE["networks"]["shared-store"].get("internal") is True
    on_it = {n for n, spec in SERVICES.items() if "shared-store" in spec.get("networks", [])}
    assert on_it == {"orthanc-shared", "proxy"}
    assert SERVICES["orthanc-shared"]["networks"] == ["stores", "shared-store"]
    assert set(SERVICES["proxy"]["networks"]) == {"edge", "shared-store"}
    # Inside nginx, only the internal WADO-RS location talks to it.
    senders = [pattern for _, pattern, upstream in LOCATIONS if upstream == "shared_store"]
    assert senders == [f"{configs.ACCEL_REDIRECT}studies/"]


def coturn_settings() -> list[tuple[str, str]]:
    pairs = []
    for line in configs.COTURN_CONF.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def denied_ranges() -> list[tuple[Any, Any]]:
    ranges = []
    for key, value in coturn_settings():
        if key == "denied-peer-ip":
            low, _, high = value.partition("-")
            ranges.append((ipaddress.ip_address(low), ipaddress.ip_address(high or low)))
    return ranges


@pytest.mark.parametrize(
    "network",
    [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::1/128",
        "::/128",
        "fc00::/7",
        "fe80::/10",
    ],
)
def test_coturn_never_relays_into_private_networks(network: str) -> None:
    net = ipaddress.ip_network(network)
    covered = any(
        low.version == net.version and low <= net[0] and net[-1] <= high
        for low, high in denied_ranges()
    )
    assert covered, f"{network} is not denied"


def test_coturn_uses_the_shared_secret_from_env_and_sets_quotas() -> None:
    settings = dict(coturn_settings())
    keys = [key for key, _ in coturn_settings()]
    assert "use-auth-secret" in keys and "static-auth-secret" not in keys
    assert "allow-loopback-peers" not in keys and "no-multicast-peers" in keys
    for quota in ("user-quota", "total-quota", "max-bps"):
        assert int(settings[quota]) > 0, quota
    coturn = SERVICES["coturn"]
    assert '--static-auth-secret="$$JISR_TURN_SECRET"' in " ".join(coturn["command"])
    assert coturn["env_file"] == ["infra/env/turn.env"]
    for service in APP_SERVICES:  # the teleconsult service signs passwords with the same secret
        assert "infra/env/turn.env" in SERVICES[service]["env_file"]
    low, high = settings["min-port"], settings["max-port"]
    assert f"{low}-{high}:{low}-{high}/udp" in coturn["ports"]


def test_redis_refuses_to_evict_queued_tasks() -> None:
    assert configs.redis_policy() == "noeviction"
    redis = SERVICES["redis"]
    assert redis["command"] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert any(v.startswith("./infra/redis/redis.conf:") for v in redis["volumes"])
    assert "ports" not in redis


def test_celery_survives_a_killed_worker_and_outlives_its_longest_wait() -> None:
    from services.imaging.forwarding import service as forwarding

    conf = tasks.celery_app.conf
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert conf.result_backend_transport_options["visibility_timeout"] == visibility
    # A task waiting for its retry (an ETA) sits unacknowledged in Redis: the visibility
    # timeout must outlast the longest countdown and the longest beat interval, or
    # Redis hands it to a second worker.
    longest_wait = max(forwarding.backoff(n) for n in range(forwarding.MAX_RETRIES + 1))
    defaults = Settings()
    assert visibility > longest_wait
    assert visibility > max(defaults.expiry_check_interval_s, defaults.escalation_interval_s)


def test_readiness_names_only_checks_that_exist() -> None:
    for service in APP_SERVICES:
        assert set(health.SERVICE_CHECKS[service]) <= set(health.CHECKS)
    assert "shared_store" in health.SERVICE_CHECKS["imaging"]
    assert "signalling" in health.SERVICE_CHECKS["teleconsult"]


def test_operations_paths_are_open_to_the_proxys_own_host_only() -> None:
    block = re.search(r"location ~ \^/_ops/.*?\{(.*?)\}", TEMPLATE, re.DOTALL)
    assert block is not None
    rules = re.findall(r"^\s*(allow|deny)\s+(\S+);", block.group(1), re.MULTILINE)
    assert rules == [("allow", "127.0.0.1"), ("allow", "::1"), ("deny", "all")]


# -- run-services' own checks and adaptations --------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis of our own that may evict keys (the machine's is not ours to reconfigure)."""
    server = shutil.which("redis-server")
    if server is None:
        missing_part("redis-server is not installed: apt install redis-server")
    port = free_port()
    process = Process(
        "redis",
        [
            str(server),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
            "--maxmemory-policy",
            "allkeys-lru",
        ],
        dict(os.environ),
        tmp_path / "redis.log",
    )
    process.start()
    try:
        wait_until("redis", lambda: listening("127.0.0.1", port), watch=[process], timeout_s=20)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.stop()


def test_run_services_warns_when_redis_may_evict_queued_tasks(own_redis: str) -> None:
    (warning,) = check_redis(own_redis)
    assert "allkeys-lru" in warning and "noeviction" in warning
    client = redis.Redis.from_url(own_redis)
    client.config_set("maxmemory-policy", "noeviction")
    client.close()
    assert check_redis(own_redis) == []
    with pytest.raises(TopologyError, match="does not answer"):
        check_redis(f"redis://127.0.0.1:{free_port()}/0")


def test_run_services_makes_its_lasting_secrets_once_and_keeps_them_private(
    tmp_path: Path,
) -> None:
    made = credentials.lasting(tmp_path)
    path = tmp_path / credentials.FILE
    assert set(made) == set(credentials.LASTING)
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    assert credentials.lasting(tmp_path) == made  # a restart on the same folder keeps them
    assert path.stat().st_mode & 0o777 == 0o600
    other = tmp_path / "other"
    other.mkdir()
    assert credentials.lasting(other) != made  # each run folder its own
    production = Settings(
        environment="production",
        database_url="postgresql+asyncpg://jisr@127.0.0.1/jisr",
        admin_password=made["JISR_ADMIN_PASSWORD"],
        pseudonym_secret=made["JISR_PSEUDONYM_SECRET"],
        turn_secret="made-per-run",
    )
    assert production.environment == "production"


def test_orthanc_keeps_its_production_settings_on_this_machine(tmp_path: Path) -> None:
    production = json.loads(configs.ORTHANC_CONFIGS["local"].read_text())
    here = configs.orthanc_config(
        "local", http_port=18042, dicom_port=14242, folder=tmp_path, postgres=None
    )
    changed = {k for k in production if production[k] != here.get(k)}
    assert changed == {
        "HttpPort",
        "DicomPort",
        "StorageDirectory",
        "IndexDirectory",
        "RemoteAccessAllowed",
        "Plugins",
        "PostgreSQL",
    }
    assert here["RemoteAccessAllowed"] is False  # loopback only on a shared machine
    assert [Path(p).name for p in here["Plugins"]] == ["libOrthancDicomWeb.so"]
    for key in ("AuthenticationEnabled", "ExecuteLuaEnabled", "RestApiWriteToFileSystemEnabled"):
        assert here[key] == production[key]
