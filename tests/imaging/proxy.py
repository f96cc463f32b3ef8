"""nginx from the topology's template (`jisr.topology.configs`) in front of apps of a test or bench.

The same rendering `jisr run-services` uses, on a free loopback port, every file
nginx writes under one folder; `missing_part` when nginx is not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from jisr.topology import configs, credentials
from tests.conftest import missing_part
from tests.imaging.conftest import free_port

READY_DEADLINE_S = 15.0


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def running_nginx(
    folder: Path,
    upstreams: Mapping[str, str],
    env: Mapping[str, str],
    edit: Callable[[str], str] | None = None,
) -> Iterator[str]:
    """nginx on `upstreams` (service -> host:port) for the services' `env`; yields its URL.

    `edit` changes the rendered server block (the benchmark adds a location of its own).
    """
    nginx = shutil.which("nginx")
    if nginx is None:
        missing_part("nginx is not installed: apt install nginx")
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / "tmp" / kind).mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = folder / "jisr.conf"
    rendered = configs.nginx_server(port=port, upstreams=upstreams, env=env)
    # It holds the shared store's credentials: this user's alone, as run-services writes it.
    credentials.write_private(server, edit(rendered) if edit else rendered)
    main = folder / "nginx.conf"
    main.write_text(
        configs.nginx_main(prefix=folder, server_conf=server, run_as_root=os.geteuid() == 0)
    )
    log = folder / "nginx.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - nginx on our own configuration
            [nginx, "-p", str(folder), "-c", str(main), "-e", "stderr"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
