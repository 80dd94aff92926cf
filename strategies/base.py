"""What every strategy shares: the per-symbol state protocol, decisions, and the per-symbol book.

Two paths share one set of rules:
- one bar at a time (live and the event-driven backtest): `state.update(open, high, low, close)` returns
  the target as a plain float — no objects per bar — and `state.decision(ts)` builds the `Decision`
  (with confidence and rationale) only when someone wants one;
- whole arrays (parameter sweeps): `strategy.targets(BatchData)` returns the same targets, vectorized.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError

from schemas.decisions import Decision, DecisionSide
from strategies.bar import Bar
from strategies.batch_data import BatchData


class StrategyError(ValueError):
    """Bad strategy name or parameters; `code` is stable, the message says what to change."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def side_for(target: float, previous: float) -> DecisionSide:
    if target == previous:
        return "hold"
    if target == 0.0:
        return "flat"
    return "buy" if target > previous else "sell"


def clean(value: float, digits: int = 6) -> float | None:
    """A float for a rationale: rounded, and None instead of NaN."""
    return round(value, digits) if math.isfinite(value) else None


class StrategyState(ABC):
    """One strategy's state for one symbol."""

    strategy_name: ClassVar[str]

    def __init__(self, symbol: str, warmup: int) -> None:
        self.symbol = symbol
        self.warmup = warmup
        self.bars = 0
        self.target = 0.0
        self.previous_target = 0.0
        self._warm = False  # `scan`: `_steady()` was seen True

    @property
    def ready(self) -> bool:
        return self.bars >= self.warmup

    @abstractmethod
    def update(self, open: float, high: float, low: float, close: float) -> float:
        """Consume one bar; return the target (signed fraction of equity, 0 until warmed up)."""

    def scan(
        self,
        opens: Sequence[float],
        highs: Sequence[float],
        lows: Sequence[float],
        closes: Sequence[float],
        start: int,
        end: int,
        last: float,
    ) -> tuple[int, float]:
        """Feed bars start..end-1 as `update` would, up to and including the first whose target differs from
        `last` (the target before bar `start`); return (its index, its target), or (end, last) when none does.

        The backtester's loop. A state may fuse its indicators into one loop (`_scan_steady`: the same
        arithmetic as its `update`, so the same floats and the same state after), used once `_steady()` says
        they are warm. An instance whose `update` was replaced (a wrapper pacing it) is always fed through it.
        """
        update = self.update
        i = start
        if "update" not in self.__dict__:
            if not self._warm:
                while i < end and not self._steady():
                    t = update(opens[i], highs[i], lows[i], closes[i])
                    if t != last:
                        return i, t
                    i += 1
                if i == end:
                    return end, last
                self._warm = True  # warm indicators stay warm
            return self._scan_steady(closes, i, end, last)
        for i in range(start, end):
            t = update(opens[i], highs[i], lows[i], closes[i])
            if t != last:
                return i, t
        return end, last

    def _steady(self) -> bool:
        """Whether `_scan_steady` may take the next bar (a fused loop assumes warm indicators)."""
        return False

    def _scan_steady(self, closes: Sequence[float], start: int, end: int, last: float) -> tuple[int, float]:
        """`scan` over bars start..end-1 of a state that is `_steady` (only closes: the fused strategies use
        no other price). States that fuse nothing are never steady, so this is never called for them."""
        raise NotImplementedError

    @abstractmethod
    def confidence(self) -> float:
        """In [0, 1]; each strategy documents its formula."""

    @abstractmethod
    def rationale(self) -> dict[str, Any]:
        """The indicator values behind the current target."""

    @abstractmethod
    def summary(self) -> str:
        """One readable sentence."""

    def decision(self, ts: datetime) -> Decision:
        if not self.ready:
            return Decision(
                strategy=self.strategy_name,
                symbol=self.symbol,
                ts=ts,
                status="insufficient_data",
                side="hold",
                target=0.0,
                previous_target=0.0,
                confidence=0.0,
                summary=f"insufficient data: {self.bars} of {self.warmup} bars needed for warm-up",
                rationale={"bars_seen": self.bars, "bars_needed": self.warmup},
            )
        return Decision(
            strategy=self.strategy_name,
            symbol=self.symbol,
            ts=ts,
            status="ready",
            side=side_for(self.target, self.previous_target),
            target=self.target,
            previous_target=self.previous_target,
            confidence=min(1.0, max(0.0, self.confidence())),
            summary=self.summary(),
            rationale=self.rationale(),
        )

    def on_bar(self, bar: Bar) -> Decision:
        self.update(bar.open, bar.high, bar.low, bar.close)
        return self.decision(bar.ts)


class Strategy(ABC):
    """A strategy with validated parameters; makes per-symbol states and the vectorized twin."""

    name: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None) -> None:
        if params is None:
            params = self.params_model()
        elif not isinstance(params, self.params_model):
            params = validate_params(self.params_model, params)
        self.params = params

    @property
    @abstractmethod
    def warmup(self) -> int:
        """Bars needed before the first ready decision."""

    @abstractmethod
    def new_state(self, symbol: str) -> StrategyState: ...

    @abstractmethod
    def targets(self, data: BatchData) -> np.ndarray:
        """The target after each bar, equal to feeding the bars one by one to `new_state`."""

    def exact_targets(self, closes: np.ndarray) -> np.ndarray | None:
        """The target after each bar, bit for bit what feeding the closes one by one to a new state returns
        (see `strategies.indicators.exact`); None when this strategy (or this setting) has no exact replay."""
        return None


def validate_params(model: type[BaseModel], raw: Any) -> Any:
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}" for err in e.errors())
        raise StrategyError("invalid_params", f"invalid parameters for {model.__name__}: {problems}") from None


class StrategyBook:
    """Per-symbol states of one strategy: what the live bridge calls one bar at a time."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self._states: dict[str, StrategyState] = {}

    def state(self, symbol: str) -> StrategyState:
        st = self._states.get(symbol)
        if st is None:
            st = self._states[symbol] = self.strategy.new_state(symbol)
        return st

    def on_bar(self, symbol: str, bar: Bar) -> Decision:
        return self.state(symbol).on_bar(bar)
