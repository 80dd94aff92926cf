"""Feed series to strategies one bar at a time and compare with the vectorized twin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from schemas.decisions import Decision
from strategies import Bar, BatchData, Strategy

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def bars_from_closes(closes: list[float]) -> list[Bar]:
    return [Bar.from_price(T0 + timedelta(days=i), c) for i, c in enumerate(closes)]


def run_live(strategy: Strategy, closes: list[float], symbol: str = "TEST") -> list[Decision]:
    state = strategy.new_state(symbol)
    return [state.on_bar(bar) for bar in bars_from_closes(closes)]


def targets(strategy: Strategy, closes: list[float]) -> list[float]:
    """The live targets, after checking that the vectorized twin agrees exactly."""
    live = [d.target for d in run_live(strategy, closes)]
    x = np.array(closes, dtype=float)
    vec = strategy.targets(BatchData(x, x, x, x)).tolist()
    assert vec == live, "vectorized targets differ from bar-by-bar targets"
    return live
