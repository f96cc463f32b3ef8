"""An HTTP relay in front of the partner's Orthanc that can hold one answer back.

The forwarding task sends instances one by one. The relay passes every
request through to the real Orthanc and records each `POST /instances` answer
(Orthanc's `ID` and `Status`: "Success", or "AlreadyStored" for a file sent a
second time). When told to, it stores the n-th instance at the partner but
keeps the answer until released: the worker that sent it is then exactly
between "the partner holds it" and "we recorded that it does", the moment a
crash hurts most. The test waits on `held`, kills the worker, then releases.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
)
HOLD_DEADLINE = 120.0


@dataclass
class Gate:
    target: str
    hold_at: int | None = None
    """The n-th `POST /instances` (1-based) whose answer is held back."""
    stored: list[tuple[str, str]] = field(default_factory=list)
    """(Orthanc ID, Status) of every `POST /instances`, in order."""
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def relay(self, method: str, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            response = client.request(method, self.target + path, headers=headers, content=body)
        if method == "POST" and path.split("?")[0].rstrip("/") == "/instances":
            answer = response.json()
            with self._lock:
                self.stored.append((answer["ID"], answer["Status"]))
                count = len(self.stored)
            if count == self.hold_at:
                self.held.set()
                self.release.wait(HOLD_DEADLINE)
        return response


def _handler(gate: Gate) -> type[BaseHTTPRequestHandler]:
    class Relay(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            response = gate.relay(self.command, self.path, headers, body)
            try:
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)
            except OSError:
                self.close_connection = True  # the sender died while its answer was held

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Relay


@contextmanager
def running_gate(target: str, *, hold_at: int | None = None) -> Iterator[Gate]:
    gate = Gate(target, hold_at)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(gate))
    server.daemon_threads = True
    gate.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="orthanc-gate", daemon=True)
    thread.start()
    try:
        yield gate
    finally:
        gate.release.set()
        server.shutdown()
        server.server_close()
        thread.join()
