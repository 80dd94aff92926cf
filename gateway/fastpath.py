"""Route POST /webhook and /webhook/{source} straight to the handler, ahead of FastAPI's router.

The webhook handler reads raw bytes and uses no FastAPI feature (no dependencies, no body model), and
FastAPI's routing and endpoint machinery cost about as much CPU per request as the whole bare uvicorn
server. The FastAPI routes of the same paths stay: they describe the operations in the OpenAPI
document and call the same handler when the app runs without this middleware.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.correlation import HEADER, SCOPE_KEY, bound_correlation_id

Handler = Callable[[Request, str], Awaitable[Response]]
PREFIX = "/webhook"


class WebhookFastPath:
    """Outermost middleware; sets the correlation id itself, so webhooks skip CorrelationMiddleware too."""

    def __init__(self, app: ASGIApp, handle: Handler, default_source: str) -> None:
        self.app = app
        self.handle = handle
        self.default_source = default_source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            source: str | None = None
            if path == PREFIX:
                source = self.default_source
            elif path.startswith(PREFIX + "/") and "/" not in path[len(PREFIX) + 1 :] and len(path) > len(PREFIX) + 1:
                source = path[len(PREFIX) + 1 :]
            if source is not None:
                with bound_correlation_id(scope):
                    response = await self.handle(Request(scope, receive), source)
                response.raw_headers.append((HEADER, scope[SCOPE_KEY].encode()))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
