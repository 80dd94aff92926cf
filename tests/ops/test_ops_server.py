"""The services' HTTP server (`observability.http.OpsServer`) wakes once a second when idle, not ten times, yet stops
at once when told to, and still sends a fresh Date header."""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime

import httpx
import uvicorn
from starlette.applications import Starlette

from bus.embedded import free_port
from observability.http import OpsServer, ops_routes


async def _ready() -> dict[str, bool]:
    return {"ok": True}


async def test_an_idle_ops_server_wakes_once_a_second_and_stops_at_once() -> None:
    port = free_port()
    config = uvicorn.Config(
        Starlette(routes=ops_routes(_ready)), host="127.0.0.1", port=port, log_config=None, lifespan="off"
    )
    server = OpsServer(config)
    ticks = 0
    on_tick = server.on_tick

    async def counting(counter: int) -> bool:
        nonlocal ticks
        ticks += 1
        return await on_tick(counter)

    server.on_tick = counting  # type: ignore[method-assign]
    serving = asyncio.create_task(server.serve())
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        response = await http.get(f"http://127.0.0.1:{port}/healthz")
        assert response.status_code == 200
        sent = parsedate_to_datetime(response.headers["date"]).timestamp()
        assert abs(sent - time.time()) < 3

        before = ticks
        await asyncio.sleep(2.0)
        assert ticks - before <= 3, f"{ticks - before} wake-ups in 2 s (uvicorn's own loop: 20)"

        asked = time.monotonic()
        server.should_exit = True
        await asyncio.wait_for(serving, 5)
        assert time.monotonic() - asked < 0.5, "setting should_exit wakes the loop at once"
