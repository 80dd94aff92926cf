"""Confirmation tokens: preview_order signs what it showed; place_order accepts exactly that order, until it expires.

A token is `ct1.<expiry unix seconds>.<hex HMAC-SHA256>` over the expiry and the order's content
(symbol, side, quantity, type, prices, time in force, client_order_id), keyed by a secret made
once per process: tokens do not survive a restart and cannot be made outside this process.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from mcp_server.tooling import ToolFailure
from tools.clock import Clock
from tools.orders import OrderRequest

PROCESS_SECRET = secrets.token_bytes(32)
PREFIX = "ct1"


def _num(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def content(request: OrderRequest) -> str:
    return json.dumps(
        {
            "symbol": request.symbol,
            "side": request.side,
            "quantity": _num(request.quantity),
            "order_type": request.order_type,
            "limit_price": _num(request.limit_price),
            "stop_price": _num(request.stop_price),
            "time_in_force": request.time_in_force,
            "client_order_id": request.client_order_id,
        },
        sort_keys=True,
    )


@dataclass
class Confirmations:
    clock: Clock
    ttl_seconds: float = 300.0
    secret: bytes = field(default=PROCESS_SECRET, repr=False)

    def issue(self, request: OrderRequest) -> tuple[str, datetime]:
        expires = int(self.clock.now().timestamp() + self.ttl_seconds)
        return f"{PREFIX}.{expires}.{self._sign(expires, request)}", datetime.fromtimestamp(expires, UTC)

    def verify(self, request: OrderRequest, token: str | None) -> str:
        """The token's signature if it confirms exactly this order now; otherwise a tool error."""
        if not token:
            raise ToolFailure(
                "confirmation_required",
                "placing an order needs the confirmation_token from preview_order for this exact order: "
                "call preview_order with the same arguments, show the preview, then place_order with its token",
            )
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX or not parts[1].isdigit() or len(parts[2]) != 64:
            raise ToolFailure(
                "confirmation_invalid", "confirmation_token is not a token preview_order issued; call preview_order"
            )
        expires = int(parts[1])
        if not hmac.compare_digest(parts[2], self._sign(expires, request)):
            raise ToolFailure(
                "confirmation_mismatch",
                "confirmation_token was issued for a different order (symbol, side, quantity, order_type, prices, "
                "time_in_force and client_order_id must be exactly as previewed), or by an earlier server run; "
                "call preview_order for this order",
            )
        if self.clock.now().timestamp() >= expires:
            raise ToolFailure(
                "confirmation_expired",
                f"confirmation_token expired at {datetime.fromtimestamp(expires, UTC):%H:%M:%S}Z (tokens last "
                f"{self.ttl_seconds:g} s); call preview_order again to see current prices and risk",
            )
        return parts[2]

    def _sign(self, expires: int, request: OrderRequest) -> str:
        message = f"{expires}|{content(request)}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()
