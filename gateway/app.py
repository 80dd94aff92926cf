"""FastAPI app: POST /webhook (Standard Webhooks), /webhook/tradingview, /webhook/{source}; ops endpoints."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path

import nats
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from nats.aio.client import Client as NATS
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from bus.credentials import connect_with_credentials
from bus.jetstream import ensure_streams
from gateway import replay
from gateway.backlog import Backlog
from gateway.body import BodyBudget, header_values, read_body
from gateway.correlation import CorrelationMiddleware, correlation_id
from gateway.errors import Problem
from gateway.fastpath import INTERNAL_ERROR_DETAIL, GatewayApp
from gateway.ingest import SIGNALS_STREAM, Ingest
from gateway.models import Accepted
from gateway.openapi import build_openapi
from gateway.settings import GatewaySettings
from observability import metrics
from observability.heap import freeze_startup_heap
from observability.metrics import render
from schemas.subjects import STREAMS
from tools.clock import Clock, LiveClock

log = structlog.get_logger("gateway")

SEEN_BUCKET = replay.SEEN_BUCKET
UNKNOWN_SOURCE = "unknown"  # metric label for requests naming no configured source (bounded cardinality)


@dataclass
class Runtime:
    settings: GatewaySettings
    clock: Clock
    nc: NATS | None = None
    ingest: Ingest | None = None
    budget: BodyBudget = field(init=False)
    buckets: list[str] = field(default_factory=lambda: [replay.SEEN_BUCKET, replay.IDEMPOTENCY_BUCKET])

    def __post_init__(self) -> None:
        self.budget = BodyBudget(self.settings.max_inflight_body_bytes)


async def connect_gateway(url: str, data_dir: Path | None = None) -> NATS:
    """Like bus.connect, but with no reconnect buffer: while disconnected a publish fails at once (503)
    instead of being queued and stored later, after the sender was told it was not.

    Connects as the `gateway` role (bus.credentials): credentials from NATS_CREDS / NATS_USER /
    NATS_TOKEN, else `<data_dir>/nats-auth.json` of the embedded server, else none."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", error=type(exc).__name__)

    return await connect_with_credentials(
        url,
        role="gateway",
        data_dir=data_dir,
        name="gateway",
        error_cb=on_error,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        pending_size=0,
    )


def create_app(settings: GatewaySettings, clock: Clock | None = None) -> FastAPI:
    runtime = Runtime(settings=settings, clock=clock or LiveClock())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nc = await connect_gateway(settings.nats_url, settings.data_dir)
        js = nc.jetstream(timeout=settings.publish_timeout_s)
        admin = nc.jetstream()
        await ensure_streams(admin)
        seen = await replay.open_bucket(admin, replay.SEEN_BUCKET, 2 * settings.tolerance_s)
        idem = await replay.open_bucket(admin, replay.IDEMPOTENCY_BUCKET, settings.idempotency_ttl_s)
        runtime.nc = nc
        window_s = (await admin.stream_info(SIGNALS_STREAM)).config.duplicate_window or 0.0
        dedupes = window_s >= 2 * settings.tolerance_s
        if not dedupes:
            log.warning(
                "SIGNALS duplicate window is shorter than twice the timestamp tolerance; webhook-ids are claimed in KV",
                duplicate_window_s=window_s,
                tolerance_s=settings.tolerance_s,
            )
        backlog = Backlog(
            admin, settings.max_signal_backlog, settings.retry_after_s, max_wait_s=settings.max_signal_wait_s
        )
        runtime.ingest = Ingest(
            settings, runtime.clock, nc, js, seen, idem, stream_dedupes_webhook_ids=dedupes, backlog=backlog
        )
        freeze_startup_heap()
        log.info("gateway ready", nats=settings.nats_url, sources=[s.name for s in settings.sources])
        try:
            yield
        finally:
            await backlog.close()
            await nc.close()

    app = GatewayApp(
        title="trading-mcp gateway",
        version="0.2.0",
        lifespan=lifespan,
        description=(
            "Receives trading signals (Standard Webhooks HMAC, or TradingView alerts with a secret in the body) "
            "and publishes them to NATS JetStream. 202 only after the JetStream ack. Every error is "
            "application/problem+json with a stable `code` (docs/ERROR_CATALOG.md)."
        ),
    )
    app.state.runtime = runtime
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]

    @app.exception_handler(StarletteHTTPException)
    async def _http_problem(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return Problem(
                "method_not_allowed", "see the OpenAPI document at /openapi.json", headers=exc.headers
            ).response()
        return Problem("not_found", "no such endpoint; see /openapi.json").response()

    @app.exception_handler(RequestValidationError)
    async def _request_problem(_: Request, exc: RequestValidationError) -> Response:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return Problem("schema_violation", "invalid request", errors=errors).response()

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> Response:
        log.error("unhandled error", error=type(exc).__name__)
        return Problem("internal_error", INTERNAL_ERROR_DETAIL).response()

    sources = {s.name: s for s in settings.sources}

    async def handle(request: Request, source_name: str) -> Response:
        started = time.perf_counter()
        source = sources.get(source_name)
        label = source.name if source else UNKNOWN_SOURCE
        counted = _source_metrics(label)
        try:
            if source is None:
                raise Problem("unknown_source", f"no source named {source_name[:64]!r} is configured")
            ingest = runtime.ingest
            assert ingest is not None
            ingest.check_address(source, request)
            headers = header_values(request.scope)
            body = await read_body(
                request,
                headers,
                limit=settings.max_body_bytes,
                budget=runtime.budget,
                timeout_s=settings.body_timeout_s,
                retry_after_s=settings.retry_after_s,
            )
            cid = correlation_id(request.scope)
            if source.mode == "standard":
                accepted = await ingest.standard(source, headers, body, cid)
            else:
                accepted = await ingest.tradingview(source, headers, body, cid)
        except Problem as problem:
            metrics.gateway_webhooks_received_total.labels(label, problem.code).inc()
            metrics.gateway_validation_errors_total.labels(problem.code).inc()
            log.info("webhook refused", source=label, code=problem.code, status=problem.status)
            return problem.response()
        finally:
            counted.duration.observe(time.perf_counter() - started)
        (counted.duplicate if accepted.duplicate else counted.accepted).inc()
        log.info("webhook accepted", source=label, signal_id=accepted.signal_id, duplicate=accepted.duplicate)
        return Response(accepted_body(accepted), status_code=202, media_type="application/json")

    app.add_middleware(CorrelationMiddleware)  # every other request; webhooks get theirs in GatewayApp
    app.route_webhooks(handle, settings.source)

    @app.post("/webhook", status_code=202, response_model=Accepted, tags=["webhooks"])
    async def webhook(request: Request) -> Response:
        """Generic JSON signal signed the Standard Webhooks way, for the default source."""
        return await handle(request, settings.source)

    @app.post("/webhook/tradingview", status_code=202, response_model=Accepted, tags=["webhooks"])
    async def webhook_tradingview(request: Request) -> Response:
        """TradingView alert for the source named `tradingview` (secret in the body)."""
        return await handle(request, "tradingview")

    @app.post("/webhook/{source}", status_code=202, response_model=Accepted, tags=["webhooks"])
    async def webhook_source(source: str, request: Request) -> Response:
        """A signal for the named source, authenticated the way that source is configured."""
        return await handle(request, source)

    @app.get("/healthz", tags=["ops"], responses={200: {"description": "The process is alive"}})
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["ops"],
        responses={200: {"description": "Ready: NATS connected, streams and KV buckets present"}, 503: {}},
    )
    async def readyz() -> JSONResponse:
        checks = await _readiness(runtime)
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=Response,
        responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
    )
    async def metrics_endpoint() -> Response:
        body, content_type = render()
        return Response(body, media_type=content_type)

    return app


def accepted_body(accepted: Accepted) -> bytes:
    """`accepted.model_dump_json()`, written directly (it is the answer to every webhook)."""
    flag = b"true" if accepted.duplicate else b"false"
    return b'{"signal_id":' + encode_basestring_ascii(accepted.signal_id).encode() + b',"duplicate":' + flag + b"}"


@dataclass(frozen=True, slots=True)
class _SourceMetrics:
    """A source's children of the per-webhook metrics, looked up once: `labels()` costs a lock and a check per call."""

    duration: Histogram
    accepted: Counter
    duplicate: Counter


@functools.lru_cache(maxsize=256)  # the configured sources and UNKNOWN_SOURCE: a bounded set
def _source_metrics(label: str) -> _SourceMetrics:
    return _SourceMetrics(
        metrics.gateway_webhook_duration_seconds.labels(label),
        metrics.gateway_webhooks_received_total.labels(label, "accepted"),
        metrics.gateway_webhooks_received_total.labels(label, "duplicate"),
    )


async def _readiness(runtime: Runtime) -> dict[str, bool]:
    nc = runtime.nc
    connected = bool(nc and nc.is_connected)
    checks: dict[str, bool] = {"nats": connected}
    names = [s.name for s in STREAMS] + [f"KV_{b}" for b in runtime.buckets]
    if not connected or nc is None:
        return {**checks, **{n: False for n in names}}
    js = nc.jetstream(timeout=1.0)

    async def present(name: str) -> bool:
        try:
            await js.stream_info(name)
        except (TimeoutError, nats.errors.Error, OSError):
            return False
        return True

    found = await asyncio.gather(*(present(n) for n in names))
    return {**checks, **dict(zip(names, found, strict=True))}
