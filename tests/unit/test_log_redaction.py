"""Credentials in URLs never reach the logs: uvicorn logs every WebSocket's path and query."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SERVER = textwrap.dedent(
    """
    import asyncio, socket, sys
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from websockets.asyncio.client import connect
    from shared import logs

    async def room(ws):
        await ws.accept()
        await ws.close()

    async def main():
        logs.configure("INFO", json_lines=True)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = Starlette(routes=[WebSocketRoute("/ws/teleconsults/1", room)])
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, ws="websockets"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        url = f"ws://127.0.0.1:{port}/ws/teleconsults/1?token=eyJSECRET.PAYLOAD.SIG&x=1"
        async with connect(url) as client:
            await client.wait_closed()
        server.should_exit = True
        await serving

    asyncio.run(main())
    """
)


def test_a_join_token_in_a_websocket_url_is_redacted_from_the_servers_log() -> None:
    done = subprocess.run(  # noqa: S603 - this interpreter and our own script
        [sys.executable, "-c", SERVER], capture_output=True, text=True, timeout=60, check=True
    )
    logged = done.stderr
    assert '\\"WebSocket /ws/teleconsults/1?token=[redacted]&x=1\\"' in logged, logged
    assert "eyJSECRET" not in logged
