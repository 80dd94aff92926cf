"""Parameter sweeps: the vectorized strategy twins plus a light float simulation of the same orders.

Each parameter set's targets come from `strategy.targets(BatchData)` (indicators shared across sets);
only the bars where the target changes are walked, with the same sizing (`sizing`), the same risk gate
(`broker.risk_check`) and the engine's fill rules (slippage, then prices and fees rounded to 4 decimals)
in floats. With the default costs (no commission, slippage or spread) and a gate that can deny on a position
limit only, `_simulate_plain` takes the gate's decisions itself and rounds every fill price in one numpy step;
tests/backtest compare it with the gate-checked path, and a sweep's trades with the event-driven backtest's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from execsim.backtest.broker import (
    MAX_ORDER_QUANTITY,
    fill_models,
    market_price,
    plain_position_limit,
    risk_check,
    risk_limits,
)
from execsim.backtest.data import Bars
from execsim.backtest.errors import BacktestError
from execsim.backtest.result import BacktestConfig
from execsim.backtest.runner import step_curves, to_decimal
from execsim.backtest.sizing import wanted_position_float
from execsim.backtest.stats import compute_stats, infer_periods_per_year
from schemas.common import Side
from strategies.base import Strategy, StrategyError
from strategies.batch_data import BatchData
from strategies.registry import build_strategy, parameter_names, set_dotted
from tools.risk import RiskGate

LOWER_IS_BETTER = {"annualized_volatility"}
RANKABLE = (
    "sharpe",
    "sortino",
    "total_return",
    "cagr",
    "max_drawdown",
    "annualized_volatility",
    "win_rate",
    "profit_factor",
    "expectancy",
    "trades",
    "exposure",
)


@dataclass(frozen=True)
class SweepAxis:
    key: str
    values: tuple[float | int, ...]


def parse_axis(spec: str) -> SweepAxis:
    """`key=a..b` or `key=a..b:step` (inclusive); integers stay integers."""
    key, sep, rng = spec.partition("=")
    lo, dots, rest = rng.partition("..")
    hi, _, step_s = rest.partition(":")
    if not sep or not dots or not key.strip() or not lo or not hi:
        raise BacktestError("invalid_sweep", f"expected key=a..b[:step], got {spec!r}")
    try:
        nums = [int(s) for s in (lo, hi, step_s or "1")]
        is_int = True
    except ValueError:
        try:
            nums = [float(s) for s in (lo, hi, step_s or "1")]
        except ValueError:
            raise BacktestError("invalid_sweep", f"{spec!r}: a, b and step must be numbers") from None
        is_int = False
    a, b, step = nums
    if step <= 0 or b < a:
        raise BacktestError("invalid_sweep", f"{spec!r}: need a ≤ b and a positive step")
    count = int(math.floor((b - a) / step + 1e-9)) + 1
    if count > 10_000:
        raise BacktestError("invalid_sweep", f"{spec!r} has {count} values; at most 10,000 per axis")
    values = (
        tuple(a + k * step for k in range(count)) if is_int else tuple(round(a + k * step, 12) for k in range(count))
    )
    return SweepAxis(key.strip(), values)


@dataclass(frozen=True)
class LightTrade:
    side: str
    entry_bar: int
    exit_bar: int | None
    quantity: float
    entry_price: float
    exit_price: float
    pnl: float


@dataclass
class Simulation:
    fill_bars: list[int] = field(default_factory=list)
    fills: list[tuple[int, float, float, float, float]] = field(default_factory=list)  # bar, qty, price, fee, pos after
    fill_pos: list[float] = field(default_factory=list)
    fill_cash: list[float] = field(default_factory=list)
    denials: int = 0
    fees: float = 0.0


class FillPrices:
    """Each bar's open as a Decimal and the engine's market fill price for each (bar, side): computed once
    and shared by every parameter set of a sweep (the same bars fill them all)."""

    def __init__(self, bars: Bars, config: BacktestConfig) -> None:
        self.opens: np.ndarray = bars.open
        self._prices, self._fees = fill_models(config.slippage_bps, config.commission * 10_000)
        # with no commission every fee is 0 (the engine's fee is price · quantity · 0, then rounded)
        self.free = config.commission == 0
        self._open: dict[int, Decimal] = {}
        self._fill: dict[tuple[int, str], Decimal] = {}
        self._decimal: dict[float, Decimal] = {}

    def decimal(self, x: float) -> Decimal:
        """`to_decimal(x)`, remembered: whole-unit quantities and positions repeat across parameter sets."""
        d = self._decimal.get(x)
        if d is None:
            if len(self._decimal) > 100_000:
                self._decimal.clear()
            d = self._decimal[x] = to_decimal(x)
        return d

    def open(self, i: int) -> Decimal:
        d = self._open.get(i)
        if d is None:
            d = self._open[i] = to_decimal(float(self.opens[i]))
        return d

    def fill_price(self, i: int, side: Side) -> Decimal:
        price = self._fill.get((i, side))
        if price is None:
            price = self._fill[i, side] = self._prices.taker(side, market_price(self.open(i)))
        return price

    def market_floats(self, idx: np.ndarray) -> np.ndarray | None:
        """`float(fill_price(i, side))` for each i of `idx`, either side, computed for the whole array at once;
        None unless the price model moves no price (no spread, no slippage: a fill is at the open on the
        engine's tick) and every open is a plain positive price.

        Exact, not approximate: `market_price(to_decimal(x))` rounds the shortest decimal of x to 4 places, half
        to even; `rint(x · 10⁴) / 10⁴` rounds the same way wherever x · 10⁴ is not near a half. The float product
        y and the decimal · 10⁴ differ by at most about 2 ulp(y) (the product's rounding, and the shortest decimal
        being within half an ulp of x) plus 5e-7 (a decimal cut to 10 places): "near" is within 1e-5 + 8 ulp(y).
        k / 10⁴ is the float nearest k · 10⁻⁴, as `float(Decimal)` is. The few opens near a half take the Decimal
        path."""
        if not self._prices.flat:
            return None
        x = self.opens[idx]
        if len(x) == 0:
            return x.astype(np.float64)
        if not (np.isfinite(x).all() and x.min() >= 1e-6 and x.max() < 1e10):
            return None
        y = x * 10_000.0
        out: np.ndarray = np.rint(y) / 10_000.0
        near_half = np.flatnonzero(np.abs(y - np.floor(y) - 0.5) < 1e-5 + 8.0 * np.spacing(y))
        for k in near_half.tolist():
            out[k] = float(self.fill_price(int(idx[k]), "buy"))
        return out


def simulate(
    targets: np.ndarray, bars: Bars, config: BacktestConfig, gate: RiskGate, prices: FillPrices | None = None
) -> Simulation:
    prices = prices or FillPrices(bars, config)
    n = len(targets)
    changed = np.flatnonzero(np.diff(targets, prepend=0.0) != 0.0)
    changed = changed[changed + 1 < n]  # a change on the last bar is not executed
    fill_at = changed + 1  # decided at bar t's close, filled at bar t+1's open
    limit = plain_position_limit(gate, bars.symbol)
    if limit is not None and prices.free:
        market = prices.market_floats(fill_at)
        if market is not None:
            return _simulate_plain(
                targets[changed].tolist(),
                fill_at.tolist(),
                prices.opens[fill_at].tolist(),
                market.tolist(),
                config,
                gate,
                limit,
            )
    wanted = targets[changed].tolist()
    at = fill_at.tolist()
    opens = prices.opens[fill_at].tolist()
    cost = float(config.commission) + float(config.slippage_bps) / 10_000
    fractional = config.fractional
    cash, pos, pos_d = float(config.cash), 0.0, Decimal(0)
    max_quantity = float(MAX_ORDER_QUANTITY)
    symbol, decimal, open_at, fill_price, fee_of = bars.symbol, prices.decimal, prices.open, prices.fill_price, None
    if not prices.free:
        fee_of = prices._fees.fee
    sim = Simulation()
    fills, fill_bars, fill_pos, fill_cash = sim.fills, sim.fill_bars, sim.fill_pos, sim.fill_cash
    fees = 0.0
    for i, target, price in zip(at, wanted, opens, strict=True):
        want = wanted_position_float(target, cash + pos * price, price, cost, fractional)
        delta = want - pos
        if delta == 0.0:
            continue
        side: Side = "buy" if delta > 0 else "sell"
        qty = abs(delta)
        if qty >= max_quantity:
            sim.denials += 1
            continue
        qty_d = decimal(qty)
        if not risk_check(gate, symbol, side, qty_d, pos_d, open_at(i)).approved:
            sim.denials += 1
            continue
        fill_d = fill_price(i, side)
        fill = float(fill_d)
        fee = 0.0 if fee_of is None else float(fee_of(qty_d, fill_d))
        cash -= delta * fill + fee
        pos = want
        pos_d = decimal(want)
        fees += fee
        fills.append((i, delta, fill, fee, pos))
        fill_bars.append(i)
        fill_pos.append(pos)
        fill_cash.append(cash)
    sim.fees = fees
    return sim


def _simulate_plain(
    wanted: list[float],
    at: list[int],
    opens: list[float],
    market: list[float],
    config: BacktestConfig,
    gate: RiskGate,
    limit: Decimal,
) -> Simulation:
    """`simulate` where nothing but a position limit can deny and every fill is at the open with no fee: the same
    orders and fills in floats alone. The approvals are the ones `risk_check` gives (a quantity the wire carries,
    the position after within `limit`); only a position that comes within a hair of the limit is compared in
    Decimal, as the gate compares it. The approved orders count toward the gate's order rate, as there. (A
    quantity is never too small for the wire here: positions are whole units or 4 places, so a change is 0 or
    far above the 10th place.)"""
    fractional = config.fractional
    cash, pos = float(config.cash), 0.0
    max_quantity = float(MAX_ORDER_QUANTITY)
    limit_f = float(limit)
    sim = Simulation()
    fills, fill_bars, fill_pos, fill_cash = sim.fills, sim.fill_bars, sim.fill_pos, sim.fill_cash
    trunc = math.trunc
    approved = 0
    for i, target, price, fill in zip(at, wanted, opens, market, strict=True):
        # wanted_position_float, inline and with no cost (a flat price model, no commission): sized at the bar's
        # open, filled at the open on the engine's tick
        equity = cash + pos * price
        if equity <= 0.0 or target == 0.0:
            want = 0.0
        else:
            raw = target * equity / price  # `price * (1.0 + 0.0)` is `price` exactly
            want = trunc(raw * 10_000) / 10_000 if fractional else float(trunc(raw))
        delta = want - pos
        if delta == 0.0:
            continue
        if abs(delta) >= max_quantity or not (
            abs(want) + 1e-6 * (abs(pos) + abs(want) + 1.0) < limit_f or _within(pos, delta, limit)
        ):
            sim.denials += 1
            continue
        approved += 1
        cash -= delta * fill
        pos = want
        fills.append((i, delta, fill, 0.0, pos))
        fill_bars.append(i)
        fill_pos.append(pos)
        fill_cash.append(cash)
    gate.record_orders(gate.clock.now(), approved)
    return sim


def _within(pos: float, delta: float, limit: Decimal) -> bool:
    """The gate's comparison: |position + quantity| ≤ limit, in the Decimals the order would carry."""
    return abs(to_decimal(pos) + to_decimal(delta)) <= limit


def light_trades(fills: Sequence[tuple[int, float, float, float, float]], last_close: float) -> list[LightTrade]:
    """Round trips from fills, the same episode rules as `trades.TradeBook`, in floats."""
    out: list[LightTrade] = []
    pos = 0.0
    ep: list[Any] | None = None  # direction, entry bar, max qty, in qty, in notional, out notional, fees

    def close(bar: int | None, mark: float | None = None) -> None:
        assert ep is not None
        d, eb, mq, iq, inn, outn, fees = ep
        out_notional = outn if mark is None else outn + abs(pos) * mark  # an open trade is marked at `mark`
        pnl = (out_notional - inn) * d - fees
        out.append(LightTrade("long" if d > 0 else "short", eb, bar, mq, inn / iq, out_notional / iq, pnl))

    for bar, q, price, fee, new_pos in fills:  # positions come from the simulation: no float drift here
        if pos != 0.0 and (q > 0) != (pos > 0):
            crossed = new_pos != 0.0 and (new_pos > 0) != (pos > 0)
            closing = abs(pos) if new_pos == 0.0 or crossed else abs(q)
            rest = abs(new_pos) if crossed else 0.0
            fee_close = fee * closing / abs(q) if crossed else fee
            assert ep is not None
            ep[5] += closing * price
            ep[6] += fee_close
            if new_pos == 0.0 or crossed:
                close(bar)
                ep = None
            if crossed:
                ep = [1 if q > 0 else -1, bar, rest, rest, rest * price, 0.0, fee - fee_close]
            pos = new_pos
            continue
        if ep is None:
            ep = [1 if q > 0 else -1, bar, abs(new_pos), abs(new_pos), abs(q) * price, 0.0, fee]
        else:
            ep[3] += abs(q)
            ep[4] += abs(q) * price
            ep[6] += fee
            ep[2] = max(ep[2], abs(new_pos))
        pos = new_pos
    if ep is not None:
        close(None, last_close)
    return out


@dataclass
class SweepRow:
    params: dict[str, Any]
    stats: dict[str, Any]


@dataclass
class SweepResult:
    strategy: str
    rank_by: str
    axes: list[SweepAxis]
    rows: list[SweepRow]
    skipped: list[tuple[dict[str, Any], str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "rank_by": self.rank_by,
            "axes": {a.key: list(a.values) for a in self.axes},
            "results": [{"params": r.params, "stats": r.stats} for r in self.rows],
            "skipped": [{"params": p, "reason": why} for p, why in self.skipped],
        }


def evaluate(
    strategy: Strategy,
    data: BatchData,
    bars: Bars,
    config: BacktestConfig,
    gate: RiskGate,
    prices: FillPrices | None = None,
    periods_per_year: float | None = None,
) -> tuple:
    targets = strategy.targets(data)
    sim = simulate(targets, bars, config, gate, prices)
    position, cash = step_curves(len(bars), sim.fill_bars, sim.fill_pos, sim.fill_cash, float(config.cash))
    equity = cash + position * bars.close
    trades = light_trades(sim.fills, float(bars.close[-1]))
    closed = [t.pnl for t in trades if t.exit_bar is not None]
    stats = compute_stats(
        bars.ts,
        equity,
        bars.close,
        position,
        closed,
        sim.denials,
        sim.fees,
        len(sim.fills),
        periods_per_year or config.periods_per_year,
    )
    return stats, trades


def run_sweep(
    strategy_name: str,
    base_params: dict[str, Any],
    axes: Sequence[SweepAxis],
    bars: Bars,
    config: BacktestConfig | None = None,
    rank_by: str = "sharpe",
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    config = config or BacktestConfig()
    if not 1 <= len(axes) <= 2:
        raise BacktestError("invalid_sweep", f"sweep one or two parameters, got {len(axes)}")
    if len({a.key for a in axes}) != len(axes):
        raise BacktestError("invalid_sweep", "each swept parameter may appear once")
    if rank_by not in RANKABLE:
        raise BacktestError("invalid_sweep", f"cannot rank by {rank_by!r}; choose one of {', '.join(RANKABLE)}")
    build_strategy(strategy_name, base_params)  # bad base parameters fail before the sweep starts
    known = parameter_names(strategy_name)
    for axis in axes:
        if axis.key not in known:
            raise BacktestError(
                "unknown_parameter",
                f"{strategy_name} has no parameter {axis.key!r} to sweep; its parameters: {', '.join(known)}",
            )
    data = BatchData(bars.open, bars.high, bars.low, bars.close)
    prices = FillPrices(bars, config)
    ppy = config.periods_per_year or infer_periods_per_year(bars.ts)  # the same bars for every set: infer once
    combos = list(itertools.product(*(a.values for a in axes)))
    rows: list[SweepRow] = []
    skipped: list[tuple[dict[str, Any], str]] = []
    for done, values in enumerate(combos, 1):
        swept = {a.key: v for a, v in zip(axes, values, strict=True)}
        params = _merge(base_params, swept)
        try:
            strategy = build_strategy(strategy_name, params)
        except StrategyError as e:
            skipped.append((swept, e.message))
        else:
            # a fresh gate per parameter set: the gate keeps state (order rate, trading state)
            stats, _ = evaluate(strategy, data, bars, config, RiskGate(risk_limits(config.max_position)), prices, ppy)
            rows.append(SweepRow(swept, stats))
        if progress is not None:
            progress(done, len(combos))
    if not rows:
        params, why = skipped[0]
        raise BacktestError(
            "invalid_sweep", f"none of the {len(skipped)} parameter sets is valid; e.g. {params}: {why}"
        )
    sign = 1.0 if rank_by in LOWER_IS_BETTER else -1.0
    rows.sort(key=lambda r: (r.stats[rank_by] is None, sign * (r.stats[rank_by] or 0.0)))
    return SweepResult(strategy_name, rank_by, list(axes), rows, skipped)


def _merge(base: dict[str, Any], swept: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = _deep_copy(base)
    for key, value in swept.items():
        set_dotted(out, key, value)
    return out


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}
