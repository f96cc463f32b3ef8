"""Real parts a failure test may break: its own PostgreSQL cluster, Redis, and the app as a process.

Each is started on free loopback ports in a temporary folder, so a test can
restart or kill it without touching the machine's shared PostgreSQL (5432) or
Redis (6379), which other work uses. Waits poll a condition with a deadline.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from jisr.topology.processes import free_port, stop
from tests.conftest import missing_part

DEADLINE = 60.0  # seconds to wait for a part to come up


def wait_until(check: object, what: str, deadline: float = DEADLINE, pause: float = 0.05) -> None:
    """Poll `check()` until it is true; fail naming `what` after `deadline` seconds."""
    assert callable(check)
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not within {deadline} s")
        time.sleep(pause)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL if it does not exit within half the start deadline."""
    stop(process, DEADLINE / 2)


def _pg_bin() -> Path:
    configured = os.environ.get("JISR_PG_BIN")
    found = [configured] if configured else sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    for folder in reversed(found):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    missing_part(
        "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: apt install postgresql"
    )


@dataclass
class PgCluster:
    """A PostgreSQL cluster of the test's own (initdb, pg_ctl), trust on loopback, fsync off.

    initdb refuses to run as root: as root the cluster belongs to `postgres`.
    """

    folder: Path
    port: int = field(default_factory=free_port)
    bin: Path = field(default_factory=_pg_bin)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _cmd(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin / tool), *args]
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def _run(self, tool: str, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 (Debian's own tools, our arguments)
            self._cmd(tool, *args), capture_output=True, text=True, timeout=DEADLINE, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "log"),
            "-w",
            "-o",
            options,
            "start",
        )

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every session is cut, in-flight transactions roll back."""
        # -l as at start: without it the new postmaster would hold our output pipe open
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "log"),
            "-m",
            "fast",
            "-w",
            "restart",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def tool(self, tool: str, *args: str) -> str:
        """Run one of the cluster's client tools (pg_dump, pg_restore, psql) against it."""
        return self._run(tool, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", *args)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def pg_cluster_folder() -> Path:
    """A folder the cluster's owner can write: as root, one `postgres` owns under /tmp."""
    folder = Path(tempfile.mkdtemp(prefix="jisr-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    return folder


@dataclass(kw_only=True)
class Served:
    """A process of ours listening on a free loopback port."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class RedisServer(Served):
    """redis-server on a free port, nothing persisted, `noeviction` as in production."""

    folder: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing_part("redis-server is not installed: apt install redis-server")
        self.process = subprocess.Popen(  # noqa: S603 (Debian's redis-server, our arguments)
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, "redis-server answering PING")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@dataclass
class AppServer(Served):
    """The embedded app (`jisr run`) as its own process, on a free port, with `env` settings."""

    env: dict[str, str]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **self.env, "JISR_HOST": "127.0.0.1", "JISR_PORT": str(self.port)}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jisr.cli", "run"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            wait_until(self._ready, "the app answering GET /health")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the app exited with {self.process.returncode}:\n{tail}")
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False
