"""Route POST /webhook and /webhook/{source} straight to the handler, ahead of Starlette's whole stack.

The webhook handler reads raw bytes and uses no FastAPI feature (no dependencies, no body model). FastAPI's
routing and endpoint machinery cost about as much CPU per request as the whole bare uvicorn server, and the
middleware Starlette and FastAPI put in front of every app (the server-error catcher, FastAPI's exception
telemetry and body-limit wrappers) cost a tenth of a webhook more. So `GatewayApp.__call__` takes webhooks
before any of it runs, and does the one thing of theirs a webhook needs itself: an unexpected error is
answered 500 `internal_error` (problem+json) and logged. The FastAPI routes of the same paths stay: they
describe the operations in the OpenAPI document and call the same handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.correlation import HEADER, SCOPE_KEY, bound_correlation_id
from gateway.errors import Problem

Handler = Callable[[Request, str], Awaitable[Response]]
PREFIX = "/webhook"
INTERNAL_ERROR_DETAIL = "unexpected error; the signal may not be stored, resend it"

log = structlog.get_logger("gateway")


def webhook_source(path: str, default_source: str) -> str | None:
    """The source a POST to `path` names: /webhook -> the default, /webhook/<name> -> <name>; else None."""
    if path == PREFIX:
        return default_source
    if path.startswith(PREFIX + "/") and len(path) > len(PREFIX) + 1 and "/" not in path[len(PREFIX) + 1 :]:
        return path[len(PREFIX) + 1 :]
    return None


class GatewayApp(FastAPI):
    """FastAPI, with webhooks answered ahead of the middleware stack (`route_webhooks` sets the handler)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._webhook_handler: Handler | None = None
        self._default_source = ""

    def route_webhooks(self, handle: Handler, default_source: str) -> None:
        self._webhook_handler = handle
        self._default_source = default_source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handle = self._webhook_handler
        if handle is not None and scope["type"] == "http" and scope["method"] == "POST":
            source = webhook_source(scope["path"], self._default_source)
            if source is not None:
                scope["app"] = self
                with bound_correlation_id(scope):
                    try:
                        response = await handle(Request(scope, receive), source)
                    except Exception as exc:  # what ServerErrorMiddleware and the app's handler would do
                        log.error("unhandled error", error=type(exc).__name__)
                        response = Problem("internal_error", INTERNAL_ERROR_DETAIL).response()
                response.raw_headers.append((HEADER, scope[SCOPE_KEY].encode()))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
