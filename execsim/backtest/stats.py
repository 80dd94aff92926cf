"""Performance statistics from an equity curve (marked at each bar's close) and the closed trades.

Returns are simple bar-to-bar returns of equity; annualization uses `periods_per_year` (inferred from
the median bar spacing when not given: 252 for daily bars, 52 weekly, 12 monthly, otherwise the number
of such spacings in 365.25 days). Risk-free rate 0.
- sharpe = mean / std (ddof=1) · sqrt(ppy); sortino = mean / sqrt(mean(min(r, 0)²)) · sqrt(ppy)
- max_drawdown = min(equity / running max - 1), a negative fraction
- cagr = (final / initial) ^ (365.25 days / elapsed) - 1
- win_rate, profit_factor (gross wins / gross losses), expectancy (mean pnl per trade) over closed trades
- exposure = fraction of bars that end with a non-zero position
Values that are undefined (no trades, no losses, zero volatility) are None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

DAY_NS = 86_400 * 10**9


def infer_periods_per_year(ts: np.ndarray) -> float:
    if len(ts) < 2:
        return 252.0
    step = float(np.median(np.diff(ts.astype("datetime64[ns]").astype(np.int64)))) / DAY_NS
    if 0.8 <= step <= 4.0:
        return 252.0
    if 5.0 <= step <= 9.0:
        return 52.0
    if 25.0 <= step <= 35.0:
        return 12.0
    return 365.25 / step


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def compute_stats(
    ts: np.ndarray,
    equity: np.ndarray,
    close: np.ndarray,
    position: np.ndarray,
    closed_pnls: Sequence[float],
    denials: int,
    fees: float,
    orders: int,
    periods_per_year: float | None = None,
) -> dict[str, Any]:
    ppy = periods_per_year or infer_periods_per_year(ts)
    start, end = float(equity[0]), float(equity[-1])
    returns = equity[1:] / equity[:-1] - 1.0 if len(equity) > 1 else np.array([])
    elapsed_days = float((ts[-1] - ts[0]).astype("timedelta64[ns]").astype(np.int64)) / DAY_NS if len(ts) > 1 else 0
    cagr = (end / start) ** (365.25 / elapsed_days) - 1.0 if elapsed_days > 0 and end > 0 else math.nan
    vol = float(np.std(returns, ddof=1)) if len(returns) > 1 else math.nan
    mean = float(np.mean(returns)) if len(returns) else math.nan
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))) if len(returns) else math.nan
    peak = np.maximum.accumulate(equity)
    pnls = list(closed_pnls)
    wins = sum(p for p in pnls if p > 0)
    losses = -sum(p for p in pnls if p < 0)
    return {
        "start_equity": start,
        "final_equity": end,
        "total_return": end / start - 1.0,
        "buy_and_hold_return": float(close[-1] / close[0] - 1.0),
        "cagr": _num(cagr),
        "annualized_volatility": _num(vol * math.sqrt(ppy)),
        "sharpe": _num(mean / vol * math.sqrt(ppy)) if vol > 0 else None,
        "sortino": _num(mean / downside * math.sqrt(ppy)) if downside > 0 else None,
        "max_drawdown": float(np.min(equity / peak - 1.0)),
        "trades": len(pnls),
        "win_rate": sum(p > 0 for p in pnls) / len(pnls) if pnls else None,
        "profit_factor": wins / losses if losses > 0 else None,
        "expectancy": sum(pnls) / len(pnls) if pnls else None,
        "exposure": float(np.mean(position != 0.0)),
        "fees": fees,
        "orders": orders,
        "denied_orders": denials,
        "bars": len(equity),
        "periods_per_year": ppy,
    }
