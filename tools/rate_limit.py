"""One token bucket, on an injected clock: the gateway's per-source limit and the MCP server's tool-call limit."""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.clock import Clock, LiveClock


@dataclass
class TokenBucket:
    """`rate` tokens a second on average, bursts of up to `burst`; starts full."""

    rate: float
    burst: float
    clock: Clock = field(default_factory=LiveClock)
    _tokens: float = field(init=False)
    _last: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self._tokens = float(self.burst)
        self._last = self.clock.now().timestamp()

    @classmethod
    def per_minute(cls, per_minute: float, burst: int, clock: Clock | None = None) -> TokenBucket:
        return cls(per_minute / 60.0, burst, clock or LiveClock())

    @property
    def per_minute_rate(self) -> float:
        return self.rate * 60.0

    def take(self) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        now = self.clock.now().timestamp()
        self._tokens = min(float(self.burst), self._tokens + max(now - self._last, 0.0) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate
