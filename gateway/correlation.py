"""X-Correlation-ID: accepted when well-formed, else created; returned on every response and bound to logs."""

from __future__ import annotations

import os
import re

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-correlation-id"
SCOPE_KEY = "trading_mcp.correlation_id"
_WELL_FORMED = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def correlation_id(scope: Scope) -> str:
    return str(scope.get(SCOPE_KEY) or "")


class bound_correlation_id:  # noqa: N801 - used as a function: `with bound_correlation_id(scope) as cid`
    """Take the request's X-Correlation-ID (or create one), store it in the scope, bind it to log lines.

    A class rather than a @contextmanager generator: it runs for every webhook."""

    __slots__ = ("cid", "tokens")

    def __init__(self, scope: Scope) -> None:
        offered = None
        for name, value in scope["headers"]:
            if name == HEADER:
                offered = value
                break
        cid = offered.decode() if offered is not None and _WELL_FORMED.match(offered) else os.urandom(16).hex()
        scope[SCOPE_KEY] = self.cid = cid

    def __enter__(self) -> str:
        self.tokens = structlog.contextvars.bind_contextvars(correlation_id=self.cid)
        return self.cid

    def __exit__(self, *_: object) -> None:
        structlog.contextvars.reset_contextvars(**self.tokens)


class CorrelationMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): cheap enough to sit in front of every webhook."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with bound_correlation_id(scope) as cid:
            raw = cid.encode()

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), (HEADER, raw)]
                await send(message)

            await self.app(scope, receive, send_with_id)
