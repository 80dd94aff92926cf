"""Market state from normalized signals: the recent signals, newest first, and the last price per symbol."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from schemas.signals import NormalizedSignal


@dataclass
class SignalLog:
    capacity: int = 10_000
    _signals: deque[NormalizedSignal] = field(default_factory=deque)
    _seen: set[str] = field(default_factory=set)
    last_price: dict[str, Decimal] = field(default_factory=dict)

    def add(self, signal: NormalizedSignal) -> bool:
        if signal.signal_id in self._seen:
            return False
        self._seen.add(signal.signal_id)
        self._signals.append(signal)
        if len(self._signals) > self.capacity:
            self._seen.discard(self._signals.popleft().signal_id)
        self.last_price[signal.symbol] = signal.close or signal.price
        return True

    def recent(self, limit: int = 50, symbol: str | None = None) -> list[NormalizedSignal]:
        out: list[NormalizedSignal] = []
        for s in reversed(self._signals):
            if symbol is None or s.symbol == symbol:
                out.append(s)
                if len(out) >= limit:
                    break
        return out
