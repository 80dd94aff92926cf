"""Operational HTTP routes shared by the services: /healthz (alive), /readyz, /metrics."""

from __future__ import annotations

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
    ttl) nor wrote its stop snapshot. Here the signal only ends `serve()`; the caller finishes and returns."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
