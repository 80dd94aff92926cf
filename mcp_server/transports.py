"""The HTTP transports (streamable HTTP at /mcp, SSE at /sse) with their guards, plus /healthz /readyz /metrics.

- Host and Origin headers are checked on every MCP request (DNS-rebinding protection): loopback
  names always, plus the bind host and what TRADING_MCP_ALLOWED_HOSTS / _ORIGINS add.
- With a bearer token configured (required beyond loopback), every route but /healthz and /readyz
  needs `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server.settings import ServeSettings
from observability.http import ops_routes

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]


def security_settings(settings: ServeSettings) -> TransportSecuritySettings:
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=settings.host_patterns(),
        allowed_origins=settings.origin_patterns(),
    )


class BearerGuard:
    """Refuse HTTP requests without the configured bearer token (constant-time comparison)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        body = {
            "code": "unauthorized",
            "detail": "missing or wrong bearer token: send `Authorization: Bearer <TRADING_MCP_AUTH_TOKEN>`",
        }
        response = Response(
            json.dumps(body),
            status_code=401,
            media_type="application/problem+json",
            headers={"WWW-Authenticate": 'Bearer realm="trading-mcp"'},
        )
        await response(scope, receive, send)


def http_app(server: MCPServer, settings: ServeSettings, ready: ReadyCheck) -> ASGIApp:  # type: ignore[type-arg]
    for route in ops_routes(ready):
        server.custom_route(route.path, methods=["GET"], include_in_schema=False)(_endpoint(route.endpoint))
    security = security_settings(settings)
    if settings.transport == "sse":
        app: ASGIApp = server.sse_app(transport_security=security, host=settings.host)
    else:
        app = server.streamable_http_app(streamable_http_path="/mcp", transport_security=security, host=settings.host)
    if settings.auth_token is not None:
        app = BearerGuard(app, settings.auth_token.get_secret_value())
    return app


def _endpoint(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def call(request: Request) -> Response:
        return await endpoint(request)

    return call
