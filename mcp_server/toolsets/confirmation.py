"""How a person — not the model — says yes to an order, and the token that stands in where no person can be asked.

One setting chooses the policy (`TRADING_MCP_CONFIRMATION`):

- `best` (default): a person where the client can — the client's confirmation form (elicitation) when it
  supports one, else the order ticket (an MCP App) when it renders apps — and the preview token otherwise.
- `human`: a person always; a client that can do neither gets `confirmation_unavailable` and nothing is placed.
- `token`: the preview token (the model holds it: this proves the order was previewed, not that a person agreed).
- `auto`: no confirmation — only the agent loop, and only when the operator sets
  `TRADING_MCP_AGENT_CONFIRMATION=auto`; `serve` refuses it.

The token is `ct2:<expiry>:<risk version>:<market price>:<hex HMAC-SHA256>` over all of those and the exact order
(symbol, side, quantity, type, prices, time in force, client_order_id), keyed by the data dir's confirmation key
(so every replica on that data dir verifies it). It lasts 60 s by default, dies when the limits or the trading
state change (the risk version), and when the market moved more than the price band since the preview. One
token places one order: the order id is derived from the token, so a second use returns the same order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from mcp_server.tooling import ConfirmationPolicy as Policy
from mcp_server.tooling import ToolFailure, money, price, qty
from tools.account import Account
from tools.clock import Clock
from tools.orders import OrderPreview, OrderRequest

Method = Literal["elicitation", "order_ticket", "token", "auto", "unavailable"]
PREFIX = "ct2"
TICKET_URI = "ui://trading-mcp/order-ticket.html"  # the order ticket (mcp_server/toolsets/order_ticket.py)
KEY_FILE = "confirmation.key"
BPS = Decimal(10_000)


@dataclass(frozen=True)
class Choice:
    """How place_order confirms for one client, and why (shown by get_safety_status)."""

    method: Method
    why: str


def choose(policy: Policy, *, elicitation: bool, apps: bool) -> Choice:
    if policy == "auto":
        return Choice("auto", "the operator allowed this agent loop to place orders without confirmation")
    if policy == "token":
        return Choice("token", "the operator chose the preview token (TRADING_MCP_CONFIRMATION=token)")
    if elicitation:
        return Choice("elicitation", "this client can ask its user with a confirmation form (elicitation)")
    if apps:
        return Choice("order_ticket", "this client renders MCP Apps: a person confirms in preview_order's order ticket")
    if policy == "human":
        return Choice(
            "unavailable",
            "policy human, and this client has neither elicitation nor MCP Apps: no order can be placed from it",
        )
    return Choice("token", "this client has neither elicitation nor MCP Apps, so the preview token is the fallback")


class PersonConfirms(BaseModel):
    """The confirmation form's one field: the person ticks it to place exactly the order shown."""

    confirm: bool = Field(title="Place this order", description="Tick to place exactly this simulated order")


def risk_version(account: Account) -> str:
    """What a confirmation is bound to besides the order: the operator's limits revision and the trading state."""
    return f"{account.control_revision}-{account.gate.state.value}"


def load_key(data_dir: Path) -> bytes:
    """The data dir's confirmation key (created once, 0600): tokens verify on every replica sharing the dir."""
    path = data_dir / KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as out:
        out.write(key.hex())
    return key


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


def order_digest(request: OrderRequest) -> str:
    """A short stable name for exactly this order (shown to the person, so a changed order reads differently)."""
    return hashlib.sha256(content(request).encode()).hexdigest()[:12]


@dataclass
class Confirmations:
    clock: Clock
    ttl_seconds: float = 60.0
    price_band_bps: Decimal = Decimal(50)
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def issue(self, request: OrderRequest, version: str, market: Decimal | None) -> tuple[str, datetime]:
        expires = int(self.clock.now().timestamp() + self.ttl_seconds)
        price = _num(market) or "-"
        signature = self._sign(expires, version, price, request)
        return f"{PREFIX}:{expires}:{version}:{price}:{signature}", datetime.fromtimestamp(expires, UTC)

    def verify(self, request: OrderRequest, token: str | None, version: str, market: Decimal | None) -> str:
        """The token's signature if it confirms exactly this order now; otherwise a coded tool error."""
        if not token:
            raise ToolFailure(
                "confirmation_required",
                "placing an order needs the confirmation_token from preview_order for this exact order: "
                "call preview_order with the same arguments, show the preview, then place_order with its token",
            )
        parts = token.split(":")
        if len(parts) != 5 or parts[0] != PREFIX or not parts[1].isdigit() or len(parts[4]) != 64:
            raise ToolFailure(
                "confirmation_invalid", "confirmation_token is not a token preview_order issued; call preview_order"
            )
        expires, issued_version, price = int(parts[1]), parts[2], parts[3]
        if not hmac.compare_digest(parts[4], self._sign(expires, issued_version, price, request)):
            raise ToolFailure(
                "confirmation_mismatch",
                "confirmation_token was issued for a different order (symbol, side, quantity, order_type, prices, "
                "time_in_force and client_order_id must be exactly as previewed), or with another confirmation "
                "key; call preview_order for this order",
            )
        if self.clock.now().timestamp() >= expires:
            raise ToolFailure(
                "confirmation_expired",
                f"confirmation_token expired at {datetime.fromtimestamp(expires, UTC):%H:%M:%S}Z (tokens last "
                f"{self.ttl_seconds:g} s); call preview_order again to see current prices and risk",
            )
        if issued_version != version:
            raise ToolFailure(
                "confirmation_stale",
                "the risk limits or the trading state changed since this preview (get_risk_status shows them now); "
                "call preview_order again",
            )
        moved = self.moved_bps(price, market)
        if moved is not None and moved > self.price_band_bps:
            raise ToolFailure(
                "confirmation_price_moved",
                f"{request.symbol} moved {moved:.0f} bps since the preview (more than the "
                f"{self.price_band_bps:g} bps band); call preview_order again to confirm at the current price",
            )
        return parts[4]

    @staticmethod
    def moved_bps(previewed: str | Decimal | None, market: Decimal | None) -> Decimal | None:
        """How far the market moved from the previewed price, in basis points (None when either is unknown)."""
        try:
            then = Decimal(previewed) if isinstance(previewed, str) else previewed
        except InvalidOperation:
            return None
        if then is None or market is None or then <= 0:
            return None
        return abs(market - then) / then * BPS

    def _sign(self, expires: int, version: str, price: str, request: OrderRequest) -> str:
        message = f"{expires}|{version}|{price}|{content(request)}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()


def ticket_text(request: OrderRequest, preview: OrderPreview) -> str:
    """The order as it will be sent, with its estimate and the risk verdict: what the person confirms."""
    terms = request.order_type
    if request.stop_price is not None:
        terms += f" stop {price(request.stop_price)}"
    if request.limit_price is not None:
        terms += f" limit {price(request.limit_price)}"
    coid = f" (client_order_id {request.client_order_id})" if request.client_order_id else ""

    def shown(value: Decimal | None, as_money: bool = True) -> str:
        return "unknown" if value is None else (money(value) if as_money else price(value))

    lines = [
        f"Place this SIMULATED order (paper account, no real money)? [order {order_digest(request)}]",
        f"{request.side.upper()} {qty(request.quantity)} {request.symbol} {terms} {request.time_in_force}{coid}",
        f"Estimated price {shown(preview.estimated_price, as_money=False)}, notional "
        f"{shown(preview.estimated_notional)}, fee about {shown(preview.estimated_fee)}",
        f"Risk gate: {'would approve' if preview.approved else 'would DENY'} ({preview.reason_code}); "
        f"trading state {preview.trading_state}",
    ]
    return "\n".join(lines)
