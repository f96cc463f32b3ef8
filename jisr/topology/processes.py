"""One supervised child process of the topology: start, watch, stop, start again.

Each child runs in its own session (a Ctrl-C in the terminal reaches only
`jisr run-services`, which then stops the children in order) and writes to its
own log file, whose tail is shown when it dies early.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STOP_DEADLINE_S = 15.0


class TopologyError(RuntimeError):
    """A part of the topology did not start, or died."""


def free_port() -> int:
    """A TCP port free on every interface (Orthanc 1.10 binds all of them)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports."""
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Process:
    """A named child: `argv` with `env`, output to `log`."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log: Path
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.alive:
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(  # noqa: S603 - our own binaries and arguments
                list(self.argv),
                env=dict(self.env),
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check(self) -> None:
        """Raise, with the end of its log, when the process has exited."""
        if self.popen is not None and self.popen.poll() is not None:
            raise TopologyError(
                f"{self.name} exited with {self.popen.returncode}; end of {self.log}:\n{self.tail()}"
            )

    def signal(self, signum: int) -> None:
        """Send `signum` to the process and its children (SIGKILL simulates a crash)."""
        if self.alive and self.popen is not None:
            os.killpg(self.popen.pid, signum)

    def stop(self, deadline_s: float = STOP_DEADLINE_S) -> int | None:
        """SIGTERM, then SIGKILL after `deadline_s`; the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode


def stop(process: subprocess.Popen[bytes] | None, deadline_s: float = STOP_DEADLINE_S) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `deadline_s` (a child outside
    `Process`: a test's or a benchmark's server)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(
    what: str,
    ready: Callable[[], bool],
    *,
    watch: Sequence[Process],
    timeout_s: float = 60.0,
    poll_s: float = 0.1,
) -> None:
    """Poll `ready` until it holds; fail at once if a watched process dies, or at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        for process in watch:
            process.check()
        if ready():
            return
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}:\n{p.tail(10)}" for p in watch)
            raise TopologyError(f"{what} not ready within {timeout_s:.0f} s\n{tails}")
        time.sleep(poll_s)
