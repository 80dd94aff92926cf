"""An independent reference for the backtest rules, written in plain pandas and Python loops.

It shares no code with strategies/ or execsim/: indicators from pandas rolling/ewm, the strategy rules
as explicit loops over rows, and the execution (next-open market fills, commission, whole units, one
net position) as a loop over target changes.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import pandas as pd


def wilder_like(values: pd.Series, alpha: float, first: int, seed: float) -> pd.Series:
    s = values.copy().astype(float)
    s.iloc[first] = seed
    out = s.iloc[first:].ewm(alpha=alpha, adjust=False).mean()
    return out.reindex(values.index)


def roc_targets(c: pd.Series, p: dict) -> pd.Series:
    lookback, m, com = p["lookback"], p["vol_min_periods"], p["vol_com"]
    roc = c / c.shift(lookback) - 1
    r2 = np.log(c / c.shift(1)) ** 2
    var = wilder_like(r2, 1 - com / (1 + com), m, r2.iloc[1 : m + 1].mean())
    vol = np.sqrt(var * 252)
    out = []
    for t in range(len(c)):
        if t < max(lookback, m):
            out.append(0.0)
            continue
        raw = 1.0 if vol.iloc[t] == 0 else min(1.0, p["vol_target"] / vol.iloc[t])
        size = math.floor(raw / p["target_step"] + 1e-9) * p["target_step"]
        out.append(size if roc.iloc[t] > 0 else -size if roc.iloc[t] < 0 else 0.0)
    return pd.Series(out, index=c.index)


def ma_cross_targets(c: pd.Series, p: dict) -> pd.Series:
    fast, slow = c.rolling(p["fast"]).mean(), c.rolling(p["slow"]).mean()
    out, cur = [], 0.0
    for t in range(len(c)):
        if t >= p["slow"] - 1:
            d = fast.iloc[t] - slow.iloc[t]
            if d > 1e-9 * abs(slow.iloc[t]):
                cur = 1.0
            elif d < -1e-9 * abs(slow.iloc[t]):
                cur = 0.0 if p.get("long_only") else -1.0
        out.append(cur)
    return pd.Series(out, index=c.index)


def rsi(c: pd.Series, n: int) -> pd.Series:
    d = c.diff()
    gain, loss = d.clip(lower=0).fillna(0.0), (-d).clip(lower=0).fillna(0.0)
    g = wilder_like(gain, 1 / n, n, gain.iloc[1 : n + 1].mean())
    lo = wilder_like(loss, 1 / n, n, loss.iloc[1 : n + 1].mean())
    return (100 * g / (g + lo)).where(g + lo > 0, 50.0).where(g.notna())


def mean_reversion_targets(c: pd.Series, p: dict) -> pd.Series:
    w = p["window"]
    mean, std = c.rolling(w).mean(), c.rolling(w).std(ddof=0)
    constant = c.rolling(w).max() == c.rolling(w).min()
    z = ((c - mean) / std).where(~constant, 0.0)
    r = rsi(c, p.get("rsi_period", 14)) if p.get("rsi_confirm") else None
    warm = max(w, p.get("rsi_period", 14) + 1) if p.get("rsi_confirm") else w
    out, cur = [], 0.0
    for t in range(len(c)):
        if t >= warm - 1:
            zt = z.iloc[t]
            ok_long = r is None or r.iloc[t] <= 30
            ok_short = r is None or r.iloc[t] >= 70
            if zt <= -1.25 and ok_long:
                cur = 1.0
            elif zt >= 1.25 and ok_short:
                cur = -1.0
            elif (cur > 0 and zt >= -0.5) or (cur < 0 and zt <= 0.5):
                cur = 0.0
        out.append(cur)
    return pd.Series(out, index=c.index)


def hybrid_targets(c: pd.Series, mom: dict, mr: dict, q: int, window: int, band: float, warmup: int) -> pd.Series:
    tm, tr = roc_targets(c, mom), mean_reversion_targets(c, mr)
    lc = np.log(c)
    v1 = lc.diff().rolling(window).var(ddof=0)
    vq = (lc - lc.shift(q)).rolling(window).var(ddof=0)
    vr = (vq / (q * v1)).where(v1 > 0, 1.0)
    out, w = [], 0.5
    for t in range(len(c)):
        if t < warmup - 1:
            out.append(0.0)
            continue
        score = vr.iloc[t] - 1
        w = 1.0 if score > band else 0.0 if score < -band else 0.5 if abs(score) <= band / 2 else w
        out.append(w * tm.iloc[t] + (1 - w) * tr.iloc[t])
    return pd.Series(out, index=c.index)


def _q4(x: float) -> float:
    return float(Decimal(repr(float(x))).quantize(Decimal("0.0001"), ROUND_HALF_EVEN))


def execute(df: pd.DataFrame, targets: pd.Series, cash: float, commission: float) -> list[dict]:
    """Trades from targets: change on bar t's close -> market fill at bar t+1's open."""
    trades: list[dict] = []
    pos, open_trade = 0, None
    prev = 0.0
    for t in range(len(df) - 1):
        target = targets.iloc[t]
        if target == prev:
            continue
        prev = target
        price = df["open"].iloc[t + 1]
        equity = cash + pos * price
        want = math.trunc(target * equity / (price * (1 + commission))) if equity > 0 else 0
        delta = want - pos
        if delta == 0:
            continue
        fill = _q4(price)  # the engine quotes fills to 4 decimals
        fee = _q4(fill * abs(delta) * commission)
        cash -= delta * fill + fee
        when = df.index[t + 1]
        for qty, part_fee in _split(pos, delta, fee):
            if open_trade is None:
                open_trade = {
                    "side": "long" if qty > 0 else "short",
                    "entry_time": when,
                    "in": 0.0,
                    "out": 0.0,
                    "in_qty": 0,
                    "max_qty": 0,
                    "fees": 0.0,
                    "pos": 0,
                }
            ot = open_trade
            opening = (qty > 0) == (ot["side"] == "long")
            ot["fees"] += part_fee
            if opening:
                ot["in"] += abs(qty) * fill
                ot["in_qty"] += abs(qty)
            else:
                ot["out"] += abs(qty) * fill
            ot["pos"] += qty
            ot["max_qty"] = max(ot["max_qty"], abs(ot["pos"]))
            if ot["pos"] == 0:
                sign = 1 if ot["side"] == "long" else -1
                trades.append(
                    {
                        "side": ot["side"],
                        "entry_time": ot["entry_time"],
                        "exit_time": when,
                        "quantity": ot["max_qty"],
                        "entry_price": ot["in"] / ot["in_qty"],
                        "exit_price": ot["out"] / ot["in_qty"],
                        "pnl": sign * (ot["out"] - ot["in"]) - ot["fees"],
                    }
                )
                open_trade = None
        pos = want
    return trades


def _split(pos: int, delta: int, fee: float) -> list[tuple[int, float]]:
    """A fill that crosses zero is a closing part and an opening part; the fee is split pro rata."""
    if pos == 0 or (delta > 0) == (pos > 0) or abs(delta) <= abs(pos):
        return [(delta, fee)]
    closing = -pos
    return [(closing, fee * abs(closing) / abs(delta)), (delta - closing, fee * abs(delta - closing) / abs(delta))]
