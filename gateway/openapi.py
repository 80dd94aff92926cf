"""The OpenAPI document: request bodies read from raw bytes, signature headers, and every problem response."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.errors import CODES, PROBLEM_JSON
from gateway.models import FieldError, GenericSignal, ProblemDetails, TradingViewAlert, schema_of

STANDARD_CODES = [
    "malformed_request",
    "malformed_json",
    "invalid_header",
    "missing_signature_headers",
    "invalid_signature",
    "timestamp_out_of_tolerance",
    "ip_not_allowed",
    "symbol_not_allowed",
    "unknown_source",
    "webhook_id_conflict",
    "idempotency_key_conflict",
    "request_timeout",
    "payload_too_large",
    "schema_violation",
    "rate_limited",
    "internal_error",
    "nats_unavailable",
    "overloaded",
    "pipeline_behind",
]
TRADINGVIEW_CODES = [
    "malformed_request",
    "malformed_json",
    "invalid_header",
    "invalid_secret",
    "ip_not_allowed",
    "symbol_not_allowed",
    "unknown_source",
    "idempotency_key_conflict",
    "request_timeout",
    "payload_too_large",
    "schema_violation",
    "rate_limited",
    "internal_error",
    "nats_unavailable",
    "overloaded",
    "pipeline_behind",
]
ANY_CODES = sorted(set(STANDARD_CODES) | set(TRADINGVIEW_CODES))

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before resending", "schema": {"type": "integer"}}}
_CID = {
    "X-Correlation-ID": {
        "description": "The request's correlation id (echoed or created)",
        "schema": {"type": "string"},
    }
}


def _header(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


STANDARD_HEADERS = [
    _header("webhook-id", "Unique message id (Standard Webhooks); a resend keeps it"),
    _header("webhook-timestamp", "Unix seconds; within 300 s of the server clock"),
    _header("webhook-signature", 'Space-separated "v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>"'),
    _header("Idempotency-Key", "Optional; the same key and body within 24 h is answered as a duplicate"),
    _header("X-Correlation-ID", "Optional; created when absent, echoed, carried to NATS"),
]
TRADINGVIEW_HEADERS = [
    _header("Idempotency-Key", "Optional; the same key and body within 24 h is answered as a duplicate"),
    _header("X-Correlation-ID", "Optional; created when absent, echoed, carried to NATS"),
]


def _body(schema_ref: str, note: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema_ref}"}
    return {
        "required": True,
        "description": note,
        "content": {"application/json": {"schema": ref}, "text/plain": {"schema": {"type": "string"}}},
    }


def _responses(codes: list[str]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(CODES[code][0], []).append(code)
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
    out: dict[str, Any] = {
        "202": {
            "description": "Stored in JetStream (or already stored: `duplicate` true)",
            "headers": _CID,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
        }
    }
    for status, names in sorted(by_status.items()):
        headers = {**_CID, **(_RETRY_AFTER if status in (429, 503) else {})}
        out[str(status)] = {
            "description": "code: " + ", ".join(f"`{n}`" for n in names) + " (docs/ERROR_CATALOG.md)",
            "headers": headers,
            "content": problem,
        }
    return out


WEBHOOK_ROUTES: dict[str, tuple[str, list[str], list[dict[str, Any]], str]] = {
    "/webhook": ("GenericSignal", STANDARD_CODES, STANDARD_HEADERS, "Generic JSON signal, signed"),
    "/webhook/tradingview": (
        "TradingViewAlert",
        TRADINGVIEW_CODES,
        TRADINGVIEW_HEADERS,
        'TradingView alert JSON with a "secret" member (any Content-Type)',
    ),
    "/webhook/{source}": (
        "GenericSignal",
        ANY_CODES,
        STANDARD_HEADERS,
        "The source's format: generic JSON (standard) or TradingView alert JSON (tradingview)",
    ),
}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (GenericSignal, TradingViewAlert, ProblemDetails, FieldError):
        schema = schema_of(model)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    alert = components["TradingViewAlert"]
    alert["properties"] = {"secret": {"type": "string", "description": "The source's secret; removed before use"}}
    alert["properties"].update(schema_of(TradingViewAlert)["properties"])
    alert["required"] = ["secret", *alert.get("required", [])]
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, (model, codes, headers, note) in WEBHOOK_ROUTES.items():
        op = doc["paths"][path]["post"]
        path_params = [p for p in op.get("parameters", []) if p["in"] == "path"]
        op["parameters"] = [*path_params, *headers]
        op["requestBody"] = _body(model, note)
        if path == "/webhook/{source}":
            op["requestBody"]["content"]["application/json"]["schema"] = {
                "oneOf": [
                    {"$ref": "#/components/schemas/GenericSignal"},
                    {"$ref": "#/components/schemas/TradingViewAlert"},
                ]
            }
        op["responses"] = _responses(codes)
    app.openapi_schema = doc
    return doc
