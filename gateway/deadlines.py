"""Deadlines uvicorn does not keep: for a request's head, and (as a backstop) for its body.

uvicorn's h11 protocol arms no timer on a new connection, and its keep-alive timer is cancelled by any
byte, so a client sending a header byte every few seconds, or announcing a body and stalling, held its
connection and its buffers for ever. This protocol arms:

- a head deadline from the connection (or the previous response) until the request line and headers
  are complete; then a 408 problem+json if part of a request arrived, else a silent close;
- a body deadline from the end of the head until the end of the body, a little after the app's own
  (gateway.body answers 408 while a response can still be sent); then the connection is closed.

It also writes through gateway.coalesce, so a response's head and body leave in one send.
"""

from __future__ import annotations

import asyncio
import json

import h11
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.coalesce import CoalescingTransport
from gateway.errors import PROBLEM_JSON, Problem
from observability import metrics

log = structlog.get_logger("gateway")
MAX_HEAD_BYTES = 16 * 1024  # request line + headers (uvicorn's h11_max_incomplete_event_size)
BODY_GRACE_S = 1.0  # the app's 408 goes first; this only closes what is still open after it


def _raw_response(problem: Problem, reason: str) -> bytes:
    """A whole problem+json response that closes the connection, for when no ASGI cycle can send one."""
    body = json.dumps(problem.body(), separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {problem.status} {reason}\r\ncontent-type: {PROBLEM_JSON}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class DeadlineH11Protocol(H11Protocol):
    """H11Protocol with a head and a body deadline; `deadline_protocol` sets the two durations."""

    head_timeout_s: float = 10.0
    body_timeout_s: float = 15.0 + BODY_GRACE_S

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head()
        self._cancel_body()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Arm the deadline of the phase the client is in (h11's view of it), cancel the other."""
        state = self.conn.their_state
        if self.transport.is_closing():
            self._cancel_head()
            self._cancel_body()
        elif state is h11.IDLE:
            self._cancel_body()
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_expired)
        elif state is h11.SEND_BODY:
            self._cancel_head()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_expired)
        else:
            self._cancel_head()
            self._cancel_body()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what h11 cannot parse (also a head over h11_max_incomplete_event_size), as
        problem+json instead of text/plain."""
        limit = MAX_HEAD_BYTES // 1024
        detail = f"the request is not valid HTTP/1.1, or its line and headers exceed {limit} KB; nothing was read"
        self.transport.write(_raw_response(Problem("malformed_request", detail), "Bad Request"))
        metrics.gateway_validation_errors_total.labels("malformed_request").inc()
        self.transport.close()

    def _cancel_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        partial, _ = self.conn.trailing_data
        if partial:  # a request began: say why it ends; an idle connection just closes
            detail = f"the request line and headers did not arrive within {self.head_timeout_s:g} s; send it again"
            self.transport.write(_raw_response(Problem("request_timeout", detail), "Request Timeout"))
            metrics.gateway_validation_errors_total.labels("request_timeout").inc()
            log.info("request head timed out", code="request_timeout", received_bytes=len(partial))
        self.transport.close()

    def _body_expired(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        log.info("request body timed out; connection closed", code="request_timeout")
        self.transport.close()


def deadline_protocol(head_timeout_s: float, body_timeout_s: float) -> type[DeadlineH11Protocol]:
    """The protocol class for uvicorn's `http=`, with these deadlines (the body's plus BODY_GRACE_S)."""
    return type(
        "GatewayH11Protocol",
        (DeadlineH11Protocol,),
        {"head_timeout_s": head_timeout_s, "body_timeout_s": body_timeout_s + BODY_GRACE_S},
    )
