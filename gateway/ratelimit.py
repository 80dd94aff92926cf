"""Per-source token buckets on the injected clock. Each gateway replica keeps its own buckets."""

from __future__ import annotations

from gateway.sources import SourceConfig
from tools.clock import Clock
from tools.rate_limit import TokenBucket


class RateLimiter:
    def __init__(self, clock: Clock, sources: list[SourceConfig]) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        for s in sources:
            if s.rate_per_s is not None:
                burst = float(s.burst if s.burst is not None else max(1.0, s.rate_per_s))
                self._buckets[s.name] = TokenBucket(s.rate_per_s, burst, clock)

    def wait_s(self, source: str) -> float:
        bucket = self._buckets.get(source)
        return 0.0 if bucket is None else bucket.take()
