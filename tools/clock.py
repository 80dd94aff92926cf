"""Injected clocks: the core never reads the wall clock itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class LiveClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class TestClock:
    """A clock that moves only when told to."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 2, 14, 30, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def advance_to(self, ts: datetime) -> None:
        """Move to `ts`; a time not after now leaves the clock where it is (it never goes back)."""
        if ts > self._now:
            self._now = ts
