"""A token bucket on tool calls, on an injected clock (deterministic in tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tools.clock import Clock, LiveClock


@dataclass
class TokenBucket:
    """`per_minute` calls a minute on average, bursts of up to `burst`."""

    per_minute: float
    burst: int
    clock: Clock = field(default_factory=LiveClock)
    _tokens: float = field(init=False)
    _last: datetime = field(init=False)

    def __post_init__(self) -> None:
        if self.per_minute <= 0 or self.burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self._tokens = float(self.burst)
        self._last = self.clock.now()

    def take(self) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        now = self.clock.now()
        elapsed = max((now - self._last).total_seconds(), 0.0)
        self._last = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.per_minute / 60.0)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) * 60.0 / self.per_minute
