"""Deadlines uvicorn does not keep: for a request's head, and (as a backstop) for its body.

uvicorn's h11 protocol arms no timer on a new connection, and its keep-alive timer is cancelled by any
byte, so a client sending a header byte every few seconds, or announcing a body and stalling, held its
connection and its buffers for ever. This protocol arms:

- a head deadline from the connection (or the previous response) until the request line and headers
  are complete; then a 408 problem+json if part of a request arrived, else a silent close;
- a body deadline from the end of the head until the end of the body, a little after the app's own
  (gateway.body answers 408 while a response can still be sent); then the connection is closed.

It also writes through gateway.coalesce, so a response's head and body leave in one send, and marks a request
whose whole body came with its head (`BODY_RECEIVED`): reading it cannot stall, so gateway.body arms no timer.
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
BODY_RECEIVED = "trading_mcp.body_received"  # in a request's scope: its whole body has arrived (gateway.body)
_EARLY_S = 1e-3  # a timer may fire up to the clock's resolution early


def _raw_response(problem: Problem, reason: str) -> bytes:
    """A whole problem+json response that closes the connection, for when no ASGI cycle can send one."""
    body = json.dumps(problem.body(), separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {problem.status} {reason}\r\ncontent-type: {PROBLEM_JSON}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class DeadlineH11Protocol(H11Protocol):
    """H11Protocol with a head and a body deadline; `deadline_protocol` sets the two durations.

    A connection holds one timer, armed while it is in a phase with a deadline and moved only when it fires:
    a request that completes in time costs no timer of its own (arming and cancelling one per request, with
    gateway.body's timer, cost 33k of a webhook's 1,667k instructions). When the timer fires in a later phase,
    it is armed for that phase's end."""

    head_timeout_s: float = 10.0
    body_timeout_s: float = 15.0 + BODY_GRACE_S

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._timer: asyncio.TimerHandle | None = None
        self._phase: type[h11.IDLE] | type[h11.SEND_BODY] | None = None  # the client's state with a deadline
        self._deadline = 0.0  # the current phase's end (loop time)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not cycle.more_body:  # the whole body is in the cycle: receive() cannot wait
            cycle.scope[BODY_RECEIVED] = True
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Note the phase the client is in (h11's view of it): a new phase starts its deadline."""
        if self.transport.is_closing():
            self._phase = None
            self._disarm()
            return
        phase = _phase_of(self.conn.their_state)
        if phase is self._phase:
            return  # still the same phase (a head arriving byte by byte): its deadline stands
        self._phase = phase
        if phase is None:
            return  # the timer, if armed, finds no phase when it fires and stops
        self._deadline = self.loop.time() + (self.head_timeout_s if phase is h11.IDLE else self.body_timeout_s)
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._fire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self._phase is not _phase_of(self.conn.their_state):  # moved on unnoticed: note the phase it is in now
            self._watch()
            return
        if self._phase is None or self.transport.is_closing():
            return
        if self.loop.time() < self._deadline - _EARLY_S:  # the phase began after the timer was set
            self._timer = self.loop.call_at(self._deadline, self._fire)
        elif self._phase is h11.IDLE:
            self._head_expired()
        else:
            self._body_expired()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what h11 cannot parse (also a head over h11_max_incomplete_event_size), as
        problem+json instead of text/plain."""
        limit = MAX_HEAD_BYTES // 1024
        detail = f"the request is not valid HTTP/1.1, or its line and headers exceed {limit} KB; nothing was read"
        self.transport.write(_raw_response(Problem("malformed_request", detail), "Bad Request"))
        metrics.gateway_validation_errors_total.labels("malformed_request").inc()
        self.transport.close()

    def _head_expired(self) -> None:
        partial, _ = self.conn.trailing_data
        if partial:  # a request began: say why it ends; an idle connection just closes
            detail = f"the request line and headers did not arrive within {self.head_timeout_s:g} s; send it again"
            self.transport.write(_raw_response(Problem("request_timeout", detail), "Request Timeout"))
            metrics.gateway_validation_errors_total.labels("request_timeout").inc()
            log.info("request head timed out", code="request_timeout", received_bytes=len(partial))
        self.transport.close()

    def _body_expired(self) -> None:
        log.info("request body timed out; connection closed", code="request_timeout")
        self.transport.close()


def _phase_of(state: object) -> type[h11.IDLE] | type[h11.SEND_BODY] | None:
    """The client's state if it has a deadline: IDLE (its next head is due), SEND_BODY (the rest of its body)."""
    return state if state is h11.IDLE or state is h11.SEND_BODY else None


def deadline_protocol(head_timeout_s: float, body_timeout_s: float) -> type[DeadlineH11Protocol]:
    """The protocol class for uvicorn's `http=`, with these deadlines (the body's plus BODY_GRACE_S)."""
    return type(
        "GatewayH11Protocol",
        (DeadlineH11Protocol,),
        {"head_timeout_s": head_timeout_s, "body_timeout_s": body_timeout_s + BODY_GRACE_S},
    )
