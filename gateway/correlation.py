"""X-Correlation-ID: accepted when well-formed, else created; returned on every response and bound to logs."""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-correlation-id"
SCOPE_KEY = "trading_mcp.correlation_id"
_WELL_FORMED = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def correlation_id(scope: Scope) -> str:
    return str(scope.get(SCOPE_KEY) or "")


class CorrelationMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): cheap enough to sit in front of every webhook."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = next((v for k, v in scope["headers"] if k == HEADER), None)
        cid = offered.decode() if offered is not None and _WELL_FORMED.match(offered) else uuid.uuid4().hex
        scope[SCOPE_KEY] = cid
        raw = cid.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, raw)]
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(correlation_id=cid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
