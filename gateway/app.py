"""FastAPI app: POST /webhook — verify on raw bytes, refuse replays, normalize, publish, answer 202."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import nats
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from bus.jetstream import CORRELATION_ID, connect, ensure_streams, publish
from gateway import signing
from gateway.errors import Problem
from gateway.models import Accepted, GenericSignal
from gateway.settings import GatewaySettings
from observability import metrics
from observability.http import ops_routes
from schemas.subjects import Subject
from tools.clock import Clock, LiveClock

log = structlog.get_logger("gateway")

SEEN_BUCKET = "webhook_ids"


@dataclass
class Runtime:
    settings: GatewaySettings
    clock: Clock
    nc: nats.NATS | None = None
    js: JetStreamContext | None = None
    seen: KeyValue | None = None


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem("payload_too_large", f"the body may be at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem("payload_too_large", f"the body may be at most {limit} bytes")
    return bytes(body)


def _signal_id(source: str, webhook_id: str) -> str:
    return "sig_" + hashlib.sha256(f"{source}\n{webhook_id}".encode()).hexdigest()[:24]


def _schema_problem(exc: ValidationError) -> Problem:
    errors = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]} for e in exc.errors()]
    fields = ", ".join(e["field"] for e in errors)
    return Problem("schema_violation", f"invalid fields: {fields}", errors=errors)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def create_app(settings: GatewaySettings, clock: Clock | None = None) -> FastAPI:
    runtime = Runtime(settings=settings, clock=clock or LiveClock())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.nc = await connect(settings.nats_url, "gateway")
        runtime.js = runtime.nc.jetstream()
        await ensure_streams(runtime.js)
        runtime.seen = await runtime.js.create_key_value(
            api.KeyValueConfig(
                bucket=SEEN_BUCKET, ttl=2 * settings.tolerance_s, storage=api.StorageType.FILE, history=1
            )
        )
        log.info("gateway ready", nats=settings.nats_url, sources=[settings.source])
        yield
        await runtime.nc.close()

    app = FastAPI(
        title="trading-mcp gateway",
        version="0.1.0",
        lifespan=lifespan,
        description="Receives signed trading signals and publishes them to NATS JetStream.",
    )

    app.state.runtime = runtime

    async def ready() -> dict[str, bool]:
        return {"nats": bool(runtime.nc and runtime.nc.is_connected)}

    app.router.routes.extend(ops_routes(ready))

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        metrics.gateway_validation_errors_total.labels(exc.code).inc()
        return exc.response()

    @app.middleware("http")
    async def correlation(request: Request, call_next: Any) -> Any:
        cid = request.headers.get(CORRELATION_ID) or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(correlation_id=cid)
        request.state.correlation_id = cid
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")
        response.headers[CORRELATION_ID] = cid
        return response

    @app.post(
        "/webhook",
        status_code=202,
        response_model=Accepted,
        responses={
            400: {"description": "malformed_json"},
            401: {"description": "missing_signature_headers, invalid_signature, timestamp_out_of_tolerance"},
            409: {"description": "webhook_id_conflict"},
            413: {"description": "payload_too_large"},
            422: {"description": "schema_violation"},
            503: {"description": "nats_unavailable"},
        },
    )
    async def webhook(request: Request, rt: RuntimeDep) -> Accepted:
        """Accept one signal signed the Standard Webhooks way. 202 only once JetStream has stored it."""
        started = time.perf_counter()
        source = rt.settings.source
        try:
            accepted = await _handle(request, rt, source)
        except Problem as problem:
            metrics.gateway_webhooks_received_total.labels(source, problem.code).inc()
            log.info("webhook refused", code=problem.code, status=problem.status)
            raise
        finally:
            metrics.gateway_webhook_duration_seconds.labels(source).observe(time.perf_counter() - started)
        outcome = "duplicate" if accepted.duplicate else "accepted"
        metrics.gateway_webhooks_received_total.labels(source, outcome).inc()
        log.info("webhook accepted", signal_id=accepted.signal_id, duplicate=accepted.duplicate)
        return accepted

    return app


async def _handle(request: Request, rt: Runtime, source: str) -> Accepted:
    settings = rt.settings
    body = await _read_limited(request, settings.max_body_bytes)
    webhook_id = request.headers.get("webhook-id")
    timestamp = request.headers.get("webhook-timestamp")
    signature = request.headers.get("webhook-signature")
    if not (webhook_id and timestamp and signature):
        raise Problem(
            "missing_signature_headers",
            "send webhook-id, webhook-timestamp and webhook-signature (Standard Webhooks)",
        )
    try:
        ts = int(timestamp)
    except ValueError:
        raise Problem("timestamp_out_of_tolerance", "webhook-timestamp must be unix seconds") from None
    if not signing.verify(settings.webhook_secrets, webhook_id, ts, body, signature):
        raise Problem("invalid_signature", "no signature matches an active secret for this source")
    now = rt.clock.now()
    if abs(now.timestamp() - ts) > settings.tolerance_s:
        raise Problem(
            "timestamp_out_of_tolerance",
            f"webhook-timestamp is more than {settings.tolerance_s} s away from the server clock",
        )
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Problem("malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise Problem("malformed_json", "the body must be a JSON object")
    try:
        signal = GenericSignal.model_validate(payload)
    except ValidationError as exc:
        raise _schema_problem(exc) from None

    signal_id = _signal_id(source, webhook_id)
    body_hash = hashlib.sha256(body).hexdigest()
    key = signal_id
    previous = await _seen(rt, key)
    if previous is not None:
        if previous != body_hash:
            raise Problem("webhook_id_conflict", "this webhook-id was already used with a different body")
        return Accepted(signal_id=signal_id, duplicate=True)

    normalized = signal.normalize(
        signal_id=signal_id, source=source, received_at=now, correlation_id=request.state.correlation_id
    )
    assert rt.js is not None and rt.seen is not None
    try:
        ack = await publish(
            rt.js,
            Subject.SIGNALS_NORMALIZED,
            normalized,
            msg_id=signal_id,
            correlation_id=request.state.correlation_id,
            timeout=settings.publish_timeout_s,
        )
        await asyncio.wait_for(rt.seen.put(key, body_hash.encode()), settings.publish_timeout_s)
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        metrics.gateway_nats_errors_total.inc()
        log.warning("publish failed", error=type(exc).__name__)
        raise Problem(
            "nats_unavailable", "the signal was not stored; retry later", headers={"Retry-After": "2"}
        ) from None
    return Accepted(signal_id=signal_id, duplicate=ack.duplicate is True)


async def _seen(rt: Runtime, key: str) -> str | None:
    assert rt.seen is not None
    try:
        entry = await asyncio.wait_for(rt.seen.get(key), rt.settings.publish_timeout_s)
    except KeyNotFoundError:
        return None
    except (TimeoutError, nats.errors.Error, OSError):
        metrics.gateway_nats_errors_total.inc()
        raise Problem(
            "nats_unavailable", "the replay store is unreachable; retry later", headers={"Retry-After": "2"}
        ) from None
    return entry.value.decode() if entry.value else None
