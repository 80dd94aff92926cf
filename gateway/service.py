"""Run the gateway under uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import uvicorn

from gateway.app import create_app
from gateway.deadlines import MAX_HEAD_BYTES, deadline_protocol
from gateway.settings import GatewaySettings
from observability import runtime
from observability.http import OpsServer


def uvicorn_config(app: Callable[..., Any], settings: GatewaySettings, port: int | None = None) -> uvicorn.Config:
    """How the gateway is served; tests use the same.

    proxy_headers=False: the gateway reads X-Forwarded-For itself, and only from `trusted_proxies`;
    uvicorn's own handling would rewrite the peer address before the allowlist sees it. The h11 protocol
    with deadlines (gateway.deadlines) bounds how long a request's head and body may take."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port if port is None else port,
        log_config=None,
        loop=runtime.loop_name(),  # uvloop where installed (observability.runtime)
        lifespan="on",
        proxy_headers=False,
        http=deadline_protocol(settings.header_timeout_s, settings.body_timeout_s),
        timeout_keep_alive=settings.keep_alive_s,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )


def main(settings: GatewaySettings) -> None:
    """Serve until SIGTERM or SIGINT; the lifespan's shutdown closes the NATS connection, and the process exits 0
    (observability.http.OpsServer: plain uvicorn re-raises the signal and dies with -15)."""
    OpsServer(uvicorn_config(create_app(settings), settings)).run()
