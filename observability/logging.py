"""JSON logs on stderr, with the correlation id bound per request/message through contextvars.

stdout is never used: on the stdio transport it belongs to the MCP protocol.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import structlog

SECRET_KEYS = {"secret", "signature", "webhook-signature", "token", "authorization", "api_key", "password"}


def _redact(_: object, __: str, event: dict[str, object]) -> dict[str, object]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "[redacted]"
    return event


class _UtcTimestamp:
    """`timestamp`: ISO 8601 UTC to the microsecond (`2026-12-04T18:00:00.250000Z`). structlog's TimeStamper
    formats a datetime per line; this formats the date and time once a second."""

    def __init__(self) -> None:
        self.cached = (-1, "")  # (second, its date and time): one attribute, read and replaced whole (threads)

    def __call__(self, _: object, __: str, event: dict[str, object]) -> dict[str, object]:
        now = time.time()
        second = int(now)
        cached = self.cached
        if cached[0] != second:
            cached = self.cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        event["timestamp"] = f"{cached[1]}.{int((now - second) * 1e6):06d}Z"
        return event


def _fallback(value: Any) -> Any:
    """What JSON cannot hold, as structlog's JSONRenderer writes it: its `__structlog__()`, else its repr."""
    render = getattr(value, "__structlog__", None)
    return render() if callable(render) else repr(value)


_encode = json.JSONEncoder(default=_fallback).encode  # made once: json.dumps(default=...) makes one per line


def _render_json(_: object, __: str, event: dict[str, object]) -> str:
    return _encode(event)


def configure_logging(service: str, level: str = "INFO", *, cache: bool = False) -> None:
    """JSON lines on stderr at `level`, each with `service`. `cache`: loggers keep the configuration they first
    log with (a service process: it configures once, before its first line; a line costs a fifth less); off
    where a process configures again (the tests, which give each its own captured stderr)."""
    shared = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, _UtcTimestamp(), _redact]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _render_json],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=cache,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Route stdlib logging (uvicorn, nats, mcp) through the same JSON renderer on stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=_render_json,
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "httpx2", "mcp.server.lowlevel.server"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
