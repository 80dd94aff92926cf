"""Engine configuration and the price, fee and latency models it applies. Frozen, seeded, pure."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

BPS = Decimal(10_000)
PRICE_QUANTUM = Decimal("0.0001")
FEE_QUANTUM = Decimal("0.0001")
ZERO = Decimal(0)

IntrabarPath = Literal["adaptive", "ohlc"]


@dataclass(frozen=True)
class EngineConfig:
    """Every model of the simulator. The defaults fill at the last price with no cost and no delay.

    - `slippage_bps`: fixed slippage against the taker, in bps of price.
    - `volatility_slippage`: extra slippage as this multiple of the last bar's range
      ((high - low) / close), so a 2 % bar with 0.1 adds 0.2 % against the taker.
    - `spread_bps`: full bid-ask spread around the last price; a taker buys at the ask
      (last + half the spread) and sells at the bid.
    - `fee_bps`: fee in bps of notional; `fee_per_share` with a minimum of `fee_min` per fill,
      added on top (the minimum applies when either is set).
    - `latency_ms` + uniform `latency_jitter_ms` (drawn from `seed`): an order reaches the
      simulated exchange that long after it was submitted, and is worked only from then on.
    - `participation`: the largest fraction of a bar's volume one bar may fill, shared by the
      orders of that symbol in arrival order; None (or a bar volume of 0, "unknown") means no cap.
    - `intrabar_path`: how resting orders are walked through a bar, see `execsim.engine.intrabar`.
    """

    slippage_bps: Decimal = ZERO
    fee_bps: Decimal = ZERO
    spread_bps: Decimal = ZERO
    volatility_slippage: Decimal = ZERO
    fee_per_share: Decimal = ZERO
    fee_min: Decimal = ZERO
    latency_ms: int = 0
    latency_jitter_ms: int = 0
    participation: Decimal | None = None
    intrabar_path: IntrabarPath = "adaptive"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("slippage_bps", "fee_bps", "spread_bps", "volatility_slippage", "fee_per_share", "fee_min"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.latency_ms < 0 or self.latency_jitter_ms < 0:
            raise ValueError("latency_ms and latency_jitter_ms must be >= 0")
        if self.participation is not None and not (0 < self.participation <= 1):
            raise ValueError("participation must be in (0, 1]")


class PriceModel:
    """Taker prices around a last trade price: half the spread plus slippage, against the taker."""

    def __init__(self, config: EngineConfig) -> None:
        self._half_spread = config.spread_bps / 2 / BPS
        self._slip = config.slippage_bps / BPS
        self._fixed = self._half_spread + self._slip
        self._vol = config.volatility_slippage

    @property
    def flat(self) -> bool:
        """A taker fills at the last price itself, whatever the side or the bar: no spread, no slippage."""
        return self._fixed == 0 and not self._vol

    def taker(self, side: str, last: Decimal, bar_range: Decimal = ZERO) -> Decimal:
        move = self._fixed + self._vol * bar_range if self._vol else self._fixed
        if move == 0:
            return last
        price = last * (1 + move) if side == "buy" else last * (1 - move)
        return price.quantize(PRICE_QUANTUM, ROUND_HALF_EVEN)

    def quote(self, last: Decimal) -> tuple[Decimal, Decimal]:
        """(bid, ask) around `last`."""
        bid = (last * (1 - self._half_spread)).quantize(PRICE_QUANTUM, ROUND_HALF_EVEN)
        ask = (last * (1 + self._half_spread)).quantize(PRICE_QUANTUM, ROUND_HALF_EVEN)
        return bid, ask


class FeeModel:
    def __init__(self, config: EngineConfig) -> None:
        self._bps = config.fee_bps / BPS
        self._per_share = config.fee_per_share
        self._min = config.fee_min
        self._has_share_part = config.fee_per_share > 0 or config.fee_min > 0

    def fee(self, quantity: Decimal, price: Decimal) -> Decimal:
        fee = price * quantity * self._bps
        if self._has_share_part:
            fee += max(quantity * self._per_share, self._min)
        return fee.quantize(FEE_QUANTUM, ROUND_HALF_EVEN)


class LatencyModel:
    def __init__(self, config: EngineConfig) -> None:
        self._fixed = config.latency_ms
        self._jitter = config.latency_jitter_ms
        self._rng = random.Random(config.seed)
        self._constant = timedelta(milliseconds=self._fixed)

    def delay(self) -> timedelta:
        if not self._jitter:
            return self._constant
        return timedelta(milliseconds=self._fixed + self._rng.randint(0, self._jitter))
