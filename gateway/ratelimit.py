"""Per-source token buckets on the injected clock. Each gateway replica keeps its own buckets."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.sources import SourceConfig
from tools.clock import Clock


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    last: float

    def take(self, now: float) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, clock: Clock, sources: list[SourceConfig]) -> None:
        self._clock = clock
        now = clock.now().timestamp()
        self._buckets: dict[str, TokenBucket] = {}
        for s in sources:
            if s.rate_per_s is not None:
                burst = float(s.burst if s.burst is not None else max(1.0, s.rate_per_s))
                self._buckets[s.name] = TokenBucket(s.rate_per_s, burst, burst, now)

    def wait_s(self, source: str) -> float:
        bucket = self._buckets.get(source)
        return 0.0 if bucket is None else bucket.take(self._clock.now().timestamp())
