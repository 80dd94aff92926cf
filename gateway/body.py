"""Reading a webhook body: bounded in size, in time, and in bytes held across all requests at once.

A 408 carries `Connection: close`: that client stalled. Other refusals sent before the whole body arrived
(413, 503) let uvicorn read and discard the rest, so a sender still uploading reads its answer instead of a
connection reset; gateway.deadlines closes the connection if it is still sending after the body deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from starlette.requests import ClientDisconnect, Request
from starlette.types import Scope

from gateway.deadlines import BODY_RECEIVED
from gateway.errors import Problem

CLOSE = {"Connection": "close"}


class BodyBudget:
    """Bytes of request bodies held at once, across requests (one event loop: no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def reserve(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def release(self, n: int) -> None:
        self.held -= n


def _too_large(limit: int) -> Problem:
    return Problem("payload_too_large", f"the body may be at most {limit} bytes")


def _overloaded(retry_after_s: int) -> Problem:
    return Problem(
        "overloaded",
        "the gateway is holding as many request bodies as it may; nothing was stored; retry later",
        headers={"Retry-After": str(retry_after_s)},
    )


def header_values(scope: Scope) -> dict[str, str]:
    """The request's headers by (lower-case) name, the first of a repeated one: what Starlette's `Headers.get`
    answers, without a scan of every header (and an exception for a missing one) per lookup."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(scope["headers"])}


async def read_body(
    request: Request,
    headers: Mapping[str, str],
    *,
    limit: int,
    budget: BodyBudget,
    timeout_s: float,
    retry_after_s: int,
) -> bytes:
    """The raw body (`headers`: the request's, as `header_values` gives them). Refuses with 413 past `limit`
    bytes, 503 `overloaded` when `budget` cannot hold it (an announced Content-Length is reserved before
    reading), 408 `request_timeout` if it takes over `timeout_s`."""
    declared = headers.get("content-length")
    reserved = int(declared) if declared is not None and declared.isdigit() else 0
    if reserved > limit:
        raise _too_large(limit)
    if not budget.reserve(reserved):
        raise _overloaded(retry_after_s)
    chunks: list[bytes] = []
    size = 0
    receive = request.receive  # the ASGI messages themselves: Request.stream() adds a generator per request
    # A body that came with its head is read at once: no timer (which cost more than the read).
    deadline = contextlib.nullcontext() if request.scope.get(BODY_RECEIVED) else asyncio.timeout(timeout_s)
    try:
        async with deadline:
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":  # http.disconnect
                    raise ClientDisconnect()
                more = message.get("more_body", False)
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                if size > reserved:  # chunked, or more than announced
                    if not budget.reserve(size - reserved):
                        raise _overloaded(retry_after_s)
                    reserved = size
                if chunk:
                    chunks.append(chunk)
    except ClientDisconnect:  # nobody to answer; counted and logged under this code
        raise Problem("malformed_request", f"the connection closed after {size} bytes of the body") from None
    except TimeoutError:
        raise Problem(
            "request_timeout",
            f"the body did not arrive within {timeout_s:g} s ({size} bytes came); nothing was stored; send it again",
            headers=CLOSE,
        ) from None
    finally:
        budget.release(reserved)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
