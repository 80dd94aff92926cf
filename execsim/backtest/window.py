"""Which bars a backtest covers: from a start date, to an end date, and/or a number of bars.

`bars` alone is the last N bars; with `start` it is the first N bars from `start`; with `end` the last N up
to `end`. Dates are ISO (`2004-01-02` or `2004-01-02T15:30:00+00:00`); without a zone they are UTC. Both ends
are inclusive.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from execsim.backtest.data import Bars
from execsim.backtest.errors import BacktestError

CODE = "invalid_window"


def parse_when(name: str, raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise BacktestError(CODE, f"{name} must be an ISO date like 2004-01-02, got {raw!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def select(bars: Bars, start: datetime | None = None, end: datetime | None = None, count: int | None = None) -> Bars:
    """The bars inside the window (all of them when nothing is given)."""
    if start is not None and end is not None and count is not None:
        raise BacktestError(CODE, "give at most two of start, end and bars: together they may disagree")
    if start is not None and end is not None and start > end:
        raise BacktestError(CODE, f"start {start:%Y-%m-%d} is after end {end:%Y-%m-%d}")
    if count is not None and count < 2:
        raise BacktestError(CODE, f"bars must be at least 2, got {count}")
    ts = bars.ts
    lo = 0 if start is None else int(np.searchsorted(ts, _ns(start), side="left"))
    hi = len(bars) if end is None else int(np.searchsorted(ts, _ns(end), side="right"))
    if count is not None:
        lo, hi = (lo, min(hi, lo + count)) if start is not None else (max(lo, hi - count), hi)
    if hi - lo < 2:
        raise BacktestError(
            CODE,
            f"the window holds {max(0, hi - lo)} bar(s), a backtest needs at least 2; the data covers "
            f"{bars.time(0):%Y-%m-%d} to {bars.time(len(bars) - 1):%Y-%m-%d}",
        )
    if lo == 0 and hi == len(bars):
        return bars
    return Bars(
        bars.symbol,
        ts[lo:hi],
        bars.open[lo:hi],
        bars.high[lo:hi],
        bars.low[lo:hi],
        bars.close[lo:hi],
        bars.volume[lo:hi],
    )


def _ns(when: datetime) -> np.datetime64:
    return np.datetime64(when.astimezone(UTC).replace(tzinfo=None), "ns")
