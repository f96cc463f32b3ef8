"""`jisr run` on a fresh data directory: migrates, seeds, serves the docs and a reasoned decision."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import httpx

from jisr.topology.processes import free_port


async def test_jisr_run_serves_the_platform_on_its_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "JISR_DATA_DIR": str(tmp_path / "var"),
        "JISR_PORT": str(port),
        "JISR_ADMIN_PASSWORD": "first-start-secret",
    }
    env.pop("JISR_DATABASE_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jisr.cli",
        "run",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.returncode is None, "jisr run exited"
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "jisr run did not answer within 60 s"
                await asyncio.sleep(0.2)
            assert (await client.get("/docs")).status_code == 200
            token = (
                await client.post(
                    "/auth/token", data={"username": "setif.specialist", "password": "jisr-demo"}
                )
            ).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            asked = await client.get(
                "/api/entitlements/decide?provider=DZ-OUARGLA-EPH&service=teleconsultation",
                headers=headers,
            )
            assert (
                asked.json()["rule"] == "wrong_direction"
            )  # Sétif provides; it does not ask Ouargla
            admin = await client.post(
                "/auth/token", data={"username": "admin", "password": "first-start-secret"}
            )
            assert admin.status_code == 200
    finally:
        process.terminate()
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    text = output.decode()
    assert "created user admin with password first-start-secret" in text
    assert "oran.referrer" in text
    assert (tmp_path / "var" / "jisr.db").exists()
