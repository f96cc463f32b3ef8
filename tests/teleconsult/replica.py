"""A signalling replica in a process of its own, for tests that kill one (`kill -9`).

    python -m tests.teleconsult.replica NAMESPACE LIVENESS_S

Settings come from the `JISR_*` environment (database, signing key, a Redis
`JISR_SIGNALLING_URL`); it binds a free loopback port, prints it on one line,
and serves until killed.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import uvicorn

from services.teleconsult.signalling.bus import RedisBus
from services.teleconsult.signalling.router import Signalling, install, router
from shared.platform import Platform
from shared.settings import Settings
from shared.web import make_app
from tests.teleconsult.peers import standalone_hooks


async def main(namespace: str, liveness_s: float) -> None:
    settings = Settings()
    platform = Platform.from_settings(settings)
    app = make_app("signalling replica", [router], platform=platform)
    signalling = install(
        app,
        Signalling(
            platform,
            RedisBus(settings.signalling_url, namespace=namespace, liveness_s=liveness_s),
            standalone_hooks(),
        ),
    )
    await signalling.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(
        app, log_config=None, lifespan="off", ws="websockets-sansio", log_level="warning"
    )
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
