"""Operational HTTP routes shared by the services: /healthz (alive), /readyz, /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from observability.metrics import render

ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]


def ops_routes(ready: ReadyCheck) -> list[Route]:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        checks = await ready()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        body, content_type = render()
        return Response(body, media_type=content_type)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


class OpsServer(uvicorn.Server):
    """A uvicorn server for a service that has work to finish after it stops serving.

    uvicorn (0.29 and later) re-raises a captured SIGTERM or SIGINT once `serve()` returns, after putting back the
    default handlers, so the process dies right there. The code after `serve()` never ran: an authority or
    simulator stopped by `trading-mcp up` (SIGTERM) neither gave its leases back (the next owner waited out the
    ttl) nor wrote its stop snapshot. Here the signal only ends `serve()`; the caller finishes and returns.

    Its main loop also wakes once a second instead of ten times (uvicorn's loop sleeps 0.1 s between looks at
    `should_exit`, in every service, idle or not): setting `should_exit`, by a signal or by code, wakes it at once,
    and the Date header is still refreshed every second."""

    TICK_S = 1.0
    _loop: asyncio.AbstractEventLoop | None = None
    _exit: asyncio.Event | None = None
    _should_exit = False

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if value and self._loop is not None and self._exit is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._exit.set)  # from a signal handler or another thread alike

    async def main_loop(self) -> None:
        self._loop, self._exit = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit and not self._should_exit:
            counter = (counter + 10) % 864_000  # uvicorn refreshes the Date header on every tenth count
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), self.TICK_S)
            should_exit = await self.on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
