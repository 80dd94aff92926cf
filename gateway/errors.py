"""RFC 9457 problem details with a stable `code`. docs/ERROR_CATALOG.md lists every code."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"

# code -> (HTTP status, title)
CODES: dict[str, tuple[int, str]] = {
    "malformed_json": (400, "The body is not valid JSON"),
    "missing_signature_headers": (401, "Signature headers are missing"),
    "invalid_signature": (401, "The signature does not match"),
    "timestamp_out_of_tolerance": (401, "The webhook timestamp is too old or too far in the future"),
    "webhook_id_conflict": (409, "This webhook-id was already used for a different body"),
    "payload_too_large": (413, "The body is larger than the limit"),
    "schema_violation": (422, "The signal does not match the schema"),
    "nats_unavailable": (503, "The signal could not be stored; retry later"),
}


class Problem(Exception):
    def __init__(self, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.code = code
        self.status, self.title = CODES[code]
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> JSONResponse:
        body = {
            "type": f"https://trading-mcp.dev/errors/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers, media_type=PROBLEM_JSON)
