"""The operator's control record for the risk gate, signed so that only the operator can write it.

The record is cumulative: `limits_patch` holds every limit the operator changed (applied on top of
the configured limits), `state` the last state the operator set (HALTED by the kill switch,
ACTIVE by resume). `revision` grows with each change; the account authority applies a record only if its
revision is newer than the last one it applied. The signature is HMAC-SHA256 over the canonical
JSON of the record, keyed with the operator token; a record with a bad signature is refused and
changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from schemas.common import UtcDatetime
from tools.risk import RiskLimits, TradingState


class RiskControl(BaseModel, frozen=True):
    revision: int = Field(ge=1)
    limits_patch: dict[str, Any] = Field(default_factory=dict)
    state: TradingState | None = None
    reason: str = Field(default="", max_length=200)
    operator: str = Field(default="operator", max_length=64)
    issued_at: UtcDatetime


class SignedControl(BaseModel, frozen=True):
    payload: str
    signature: str


class ControlRefused(PermissionError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _mac(payload: str, token: str) -> str:
    return hmac.new(token.encode(), payload.encode(), hashlib.sha256).hexdigest()


def sign(control: RiskControl, token: str) -> SignedControl:
    payload = json.dumps(control.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return SignedControl(payload=payload, signature=_mac(payload, token))


def verify(signed: SignedControl, token: str) -> RiskControl:
    if not token or not hmac.compare_digest(_mac(signed.payload, token), signed.signature):
        raise ControlRefused("bad_signature", "the risk control record is not signed with the operator token")
    try:
        return RiskControl.model_validate_json(signed.payload)
    except ValidationError as exc:
        message = f"the signed risk control record is not a valid record ({exc.error_count()} errors)"
        raise ControlRefused("malformed_record", message) from exc


def patched_limits(base: RiskLimits, patch: dict[str, Any]) -> RiskLimits:
    """`base` with the operator's patch on top; raises pydantic's ValidationError on a bad patch."""
    return RiskLimits.model_validate({**base.model_dump(), **patch})


def next_control(
    previous: RiskControl | None,
    now: datetime,
    *,
    patch: dict[str, Any] | None = None,
    state: TradingState | None = None,
    reason: str = "",
    operator: str = "operator",
) -> RiskControl:
    """The record after `previous` with more limits patched and/or a new state."""
    return RiskControl(
        revision=(previous.revision if previous else 0) + 1,
        limits_patch={**(previous.limits_patch if previous else {}), **(patch or {})},
        state=state if state is not None else (previous.state if previous else None),
        reason=reason or (previous.reason if previous else ""),
        operator=operator,
        issued_at=now,
    )
