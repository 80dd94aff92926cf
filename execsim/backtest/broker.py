"""The one place where the backtester meets the live order path: the risk gate and the matching engine.

Everything the backtester knows about `tools.risk` and `execsim.engine` is in this file, so a change of
their API is adapted here alone. A decision made on bar t's close is sent as a market order whose
`reference_price` is bar t+1's open, with the engine's clock at bar t+1's time.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from typing import Any

from execsim.engine import Engine, EngineConfig
from execsim.engine.config import PRICE_QUANTUM, FeeModel, PriceModel
from schemas.common import MAX_DECIMALS, MAX_DIGITS, Side, construct_trusted
from schemas.orders import Fill, OrderIntent
from tools.clock import TestClock
from tools.risk import APPROVED, RiskGate, RiskLimits, TradingState, Verdict

BPS = Decimal(10_000)
NO_LIMIT = Decimal(10) ** 15
MAX_ORDER_QUANTITY = Decimal(10) ** (MAX_DIGITS - MAX_DECIMALS)  # the wire format's limit


def market_price(price: Decimal) -> Decimal:
    """Bar prices on the engine's tick (0.0001): adjusted data carries more digits than any market."""
    return price.quantize(PRICE_QUANTUM, ROUND_HALF_EVEN)


@lru_cache(maxsize=16)
def fill_models(slippage_bps: Decimal, fee_bps: Decimal) -> tuple[PriceModel, FeeModel]:
    """The engine's own price and fee models for these costs: the sweep's fast path fills with them."""
    config = EngineConfig(slippage_bps=slippage_bps, fee_bps=fee_bps)
    return PriceModel(config), FeeModel(config)


def risk_limits(max_position: Decimal | None) -> RiskLimits:
    return RiskLimits(max_position=max_position if max_position is not None else NO_LIMIT)


def risk_check(
    gate: RiskGate, symbol: str, side: Side, quantity: Decimal, position: Decimal, price: Decimal | None = None
) -> Verdict:
    """`gate.check` of a market order with nothing resting, from a position held now. An order the gate
    plainly approves under the backtester's limits is approved here at the cost of a few comparisons (and
    counted toward the order rate, as the gate counts it); every other one is checked by the gate itself."""
    if _plainly_approved(gate, symbol, side, quantity, position, price):
        gate.record_order(gate.clock.now())
        return APPROVED
    return gate.check(symbol=symbol, side=side, quantity=quantity, projected_position=position, price=price)


def _only_position_limit(limits: RiskLimits) -> bool:
    """Limits that switch off every check but the position limit (what `risk_limits` makes)."""
    return (
        limits.allowed_symbols is None
        and limits.max_order_quantity is None
        and not limits.max_order_quantity_per_symbol
        and limits.max_order_notional is None
        and not limits.max_order_notional_per_symbol
        and limits.max_gross_exposure is None
        and limits.max_open_orders is None
        and limits.max_orders_per_window is None
    )


_SIMPLE: dict[int, tuple[RiskLimits, bool]] = {}


def plain_position_limit(gate: RiskGate, symbol: str) -> Decimal | None:
    """`symbol`'s position limit when that is all the gate can deny on (an ACTIVE gate whose limits check nothing
    but the position), else None. Nothing in a backtest's order path moves the gate's state: it holds for a run."""
    if gate.state is not TradingState.ACTIVE or not _only_position_limit(gate.limits):
        return None
    return gate.limits.max_position_per_symbol.get(symbol, gate.limits.max_position)


def _plainly_approved(
    gate: RiskGate, symbol: str, side: Side, quantity: Decimal, position: Decimal, price: Decimal | None
) -> bool:
    """True only when `gate.check` (tools/risk.py) would approve: an ACTIVE gate whose limits check nothing but
    the position, a quantity and a price the wire carries (finite, positive, in range, ≤ MAX_DECIMALS places
    even before trailing zeros go), and a position after the order within the limit. The daily loss and
    drawdown limits act through the trading state only. tests/backtest compare this with the gate."""
    limits = gate.limits
    known = _SIMPLE.get(id(limits))
    if known is None or known[0] is not limits:
        if len(_SIMPLE) > 64:
            _SIMPLE.clear()
        known = _SIMPLE[id(limits)] = (limits, _only_position_limit(limits))
    if not known[1] or gate.state is not TradingState.ACTIVE or price is None:
        return False
    if not (price.is_finite() and 0 < quantity < MAX_ORDER_QUANTITY and 0 < price < MAX_ORDER_QUANTITY):
        return False
    q_exp, p_exp = quantity.as_tuple().exponent, price.as_tuple().exponent
    if not (isinstance(q_exp, int) and isinstance(p_exp, int) and q_exp >= -MAX_DECIMALS and p_exp >= -MAX_DECIMALS):
        return False
    after = position + quantity if side == "buy" else position - quantity
    return abs(after) <= limits.max_position_per_symbol.get(symbol, limits.max_position)


def _trusted(quantity: Decimal, reference_price: Decimal, confidence: float) -> bool:
    """What OrderIntent would check of the fields that vary between a backtest's orders."""
    return (
        0 < quantity < MAX_ORDER_QUANTITY
        and 0 < reference_price < MAX_ORDER_QUANTITY
        and -quantity.as_tuple().exponent <= MAX_DECIMALS  # type: ignore[operator]
        and -reference_price.as_tuple().exponent <= MAX_DECIMALS  # type: ignore[operator]
        and 0.0 <= confidence <= 1.0
    )


class Broker:
    def __init__(
        self,
        symbol: str,
        start: datetime,
        commission: Decimal,
        slippage_bps: Decimal,
        max_position: Decimal | None,
        strategy: str,
    ) -> None:
        self.symbol = symbol
        self.strategy = strategy
        self.clock = TestClock(start)
        config = EngineConfig(slippage_bps=slippage_bps, fee_bps=commission * BPS)
        self.engine = Engine(self.clock, config)
        self._prices, self._fees = PriceModel(config), FeeModel(config)
        self.gate = RiskGate(risk_limits(max_position), clock=self.clock)
        self._seq = 0
        self._order_prefix = "bt-" + "".join(ch if ch.isalnum() or ch in "._:-" else "_" for ch in symbol)[:40]
        self._template: OrderIntent | None = None
        self._plain: tuple[Decimal, Decimal | None] | None = None  # the last order `check` plainly approved

    def advance_to(self, ts: datetime) -> None:
        self.clock.advance_to(ts)

    def check(self, side: Side, quantity: Decimal, position: Decimal, price: Decimal | None = None) -> Verdict:
        if quantity >= MAX_ORDER_QUANTITY:
            return Verdict(False, "quantity_out_of_range", f"{quantity} units is beyond what an order can carry")
        gate = self.gate
        if _plainly_approved(gate, self.symbol, side, quantity, position, price):
            gate.record_order(gate.clock.now())
            self._plain = (quantity, price)  # its shape is checked: `fill_now` need not check it again
            return APPROVED
        self._plain = None
        return gate.check(symbol=self.symbol, side=side, quantity=quantity, projected_position=position, price=price)

    def fill_now(self, side: Side, quantity: Decimal, reference_price: Decimal) -> tuple[Decimal, Decimal] | None:
        """(price, fee) of the one fill the engine gives a market order of this shape now, computed with the
        engine's own price and fee models (and no order objects); None when the order must go through `market`:
        the first one (fully validated there) and any outside the shapes `_trusted` checks.

        The same fill as `market`: the backtester's engine has no latency, spread by bar range or volume cap,
        so a market order fills at once, in full, at `taker(side, reference price on the tick)`, fee
        `fee(quantity, price)`. tests/backtest compare the two."""
        plain = self._plain
        checked = plain is not None and plain[0] is quantity and plain[1] is reference_price
        # a plain approval checked what `_trusted` checks (quantity and price in range, at most MAX_DECIMALS places)
        if self._template is None or not (checked or _trusted(quantity, reference_price, 0.0)):
            return None
        self._seq += 1  # the order id `market` would have used is spent, as there
        price = self._prices.taker(side, market_price(reference_price))
        return price, self._fees.fee(quantity, price)

    def market(
        self, side: Side, quantity: Decimal, reference_price: Decimal, confidence: float, rationale: dict[str, Any]
    ) -> list[Fill]:
        self._seq += 1
        cid = f"{self._order_prefix}-{self._seq}"
        values = {
            "client_order_id": cid,
            "side": side,
            "quantity": quantity,
            "reference_price": reference_price,
            "confidence": confidence,
            "rationale": rationale,
            "created_at": self.clock.now(),
            "correlation_id": cid,
        }
        if self._template is None or not _trusted(quantity, reference_price, confidence):
            # the first order (and any outside the shapes checked below) is fully validated
            intent = OrderIntent(symbol=self.symbol, origin="backtest", strategy=self.strategy, **values)
            self._template = self._template or intent
        else:
            # later ones differ from the validated first only in values `_trusted` has checked (the id is the
            # same prefix with another number, the clock is the same UTC clock): copy without re-validating
            intent = construct_trusted(OrderIntent, {**self._template.__dict__, **values})
        # the engine fills market orders at its last price: make that bar t+1's open
        reference_price = market_price(reference_price)
        self.engine.set_price(self.symbol, reference_price, self.clock.now())
        fills = [e for e in self.engine.submit(intent) if isinstance(e, Fill)]
        self.engine.forget(cid)  # a backtest's ids never repeat: keep the engine's memory flat
        return fills
