"""RFC 9457 problem details with a stable `code`. docs/ERROR_CATALOG.md lists every code."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://trading-mcp.dev/errors/"

# code -> (HTTP status, title)
CODES: dict[str, tuple[int, str]] = {
    "malformed_request": (400, "The request is not valid HTTP/1.1"),
    "malformed_json": (400, "The body is not valid JSON"),
    "invalid_header": (400, "A header has an invalid value"),
    "missing_signature_headers": (401, "Signature headers are missing"),
    "invalid_signature": (401, "The signature does not match"),
    "timestamp_out_of_tolerance": (401, "The webhook timestamp is too old or too far in the future"),
    "invalid_secret": (401, "The secret in the body is missing or wrong"),
    "ip_not_allowed": (403, "The sender's address is not allowed for this source"),
    "symbol_not_allowed": (403, "This source may not send signals for this symbol"),
    "unknown_source": (404, "No such source"),
    "not_found": (404, "No such endpoint"),
    "method_not_allowed": (405, "Method not allowed on this endpoint"),
    "request_timeout": (408, "The request did not arrive in time"),
    "webhook_id_conflict": (409, "This webhook-id was already used for a different body"),
    "idempotency_key_conflict": (409, "This Idempotency-Key was already used for a different body"),
    "payload_too_large": (413, "The body is larger than the limit"),
    "schema_violation": (422, "The signal does not match the schema"),
    "rate_limited": (429, "Too many signals from this source"),
    "internal_error": (500, "Unexpected error"),
    "nats_unavailable": (503, "The signal could not be stored; retry later"),
    "overloaded": (503, "The gateway is receiving too many request bodies at once; retry later"),
    "pipeline_behind": (503, "The trading pipeline is too far behind to take this signal in time; retry later"),
}


class Problem(Exception):
    def __init__(self, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.code = code
        self.status, self.title = CODES[code]
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "type": TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }

    def response(self) -> Response:
        return Response(
            json.dumps(self.body(), separators=(",", ":")),
            status_code=self.status,
            headers=self.headers,
            media_type=PROBLEM_JSON,
        )
