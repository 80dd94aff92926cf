"""The event-driven backtest: bars -> strategy state -> risk gate -> matching engine -> trades and stats.

Semantics (also in the README):
- the strategy sees each bar at its close; when its target changes, a market order is executed at the
  next bar's open (a target change on the last bar is not executed);
- the order brings the position to `sizing.wanted_position(target, equity at that open)`: one net
  position per symbol, a reversal is one order that closes and reopens;
- commission (a fraction of notional) is charged on every fill and slippage moves the fill price, both by
  the matching engine; the risk gate sees every order first, and a denied order is recorded and not
  retried until the target changes again;
- equity is marked at every bar's close; positions still open at the end stay open (their trade is
  reported with `open: true`, marked at the last close).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import numpy as np

from execsim.backtest.broker import Broker
from execsim.backtest.data import Bars
from execsim.backtest.result import BacktestConfig, BacktestResult, Denial
from execsim.backtest.sizing import wanted_position
from execsim.backtest.stats import compute_stats
from execsim.backtest.trades import TradeBook
from schemas.common import Side
from strategies.base import Strategy

Progress = Callable[[int, int], None]
CHUNK = 1 << 15
BPS = Decimal(10_000)


TEN_PLACES = Decimal("1e-10")


def to_decimal(x: float) -> Decimal:
    """The shortest decimal that reads back as `x`, cut to the 10 places the wire format carries."""
    s = repr(x)
    dot = s.find(".")
    if "e" in s or (dot >= 0 and len(s) - dot > 11):
        return Decimal(s).quantize(TEN_PLACES)
    return Decimal(s)


def run_backtest(
    strategy: Strategy,
    bars: Bars,
    config: BacktestConfig | None = None,
    progress: Progress | None = None,
) -> BacktestResult:
    config = config or BacktestConfig()
    n = len(bars)
    time = bars.time
    broker = Broker(bars.symbol, time(0), config.commission, config.slippage_bps, config.max_position, strategy.name)
    book = TradeBook()
    denials: list[Denial] = []
    cost = config.commission + config.slippage_bps / BPS
    cash = config.cash
    fees = Decimal(0)
    # a flat account whose target is clearly under half a unit (floats, 2x margin) skips the Decimal sizing
    dust = 0.5 * (1e-4 if config.fractional else 1.0) / (1.0 + float(cost))
    cash_f = float(cash)
    fill_bars: list[int] = []
    fill_pos: list[float] = []
    fill_cash: list[float] = []

    state = strategy.new_state(bars.symbol)
    fed = 0  # bars `state` has seen (on the exact-targets path it is fed only when its confidence is needed)
    targets: dict[float, Decimal] = {}  # a strategy's targets take few distinct values: convert each once

    def execute(i: int, op: float, target: float) -> None:
        """The market order at bar i's open that brings the position to `target` (decided at bar i-1's close)."""
        nonlocal cash, cash_f, fees, fed
        if book.position == 0 and abs(target) * cash_f < dust * op:
            return
        price = to_decimal(op)
        pos = book.position
        target_d = targets.get(target)
        if target_d is None:
            target_d = targets[target] = to_decimal(target)
        want = wanted_position(target_d, cash + pos * price, price, cost, config.fractional)
        delta = want - pos
        if delta == 0:
            return
        side: Side = "buy" if delta > 0 else "sell"
        qty = abs(delta)
        now = time(i)
        broker.advance_to(now)
        answer = broker.check(side, qty, pos, price)
        if not answer.approved:
            denials.append(Denial(now, i, side, qty, answer.reason_code, answer.message))
            return
        quick = broker.fill_now(side, qty, price)
        if quick is not None:
            fills = [(delta, *quick)]
        else:
            # the state has seen bars up to the deciding one: its confidence is that bar's
            for j in range(fed, i):
                state.update(float(bars.open[j]), float(bars.high[j]), float(bars.low[j]), float(bars.close[j]))
            fed = max(fed, i)
            confidence = min(1.0, max(0.0, state.confidence()))
            fills = [
                (f.quantity if f.side == "buy" else -f.quantity, f.price, f.fee)
                for f in broker.market(side, qty, price, confidence, {"target": target})
            ]
        for signed, fill_price, fee in fills:
            cash -= signed * fill_price + fee
            fees += fee
            book.on_fill(signed, fill_price, fee, now, i)
        cash_f = float(cash)
        fill_bars.append(i)
        fill_pos.append(float(book.position))
        fill_cash.append(cash_f)

    # a state fed through a replaced `update` (a wrapper pacing it) is never bypassed
    exact = None if "update" in state.__dict__ else strategy.exact_targets(bars.close)
    if exact is not None:
        # the targets of every bar at once; orders go where they change, at the next bar's open
        changed = np.flatnonzero(exact != np.concatenate(([0.0], exact[:-1])))
        changed = changed[changed + 1 < n]  # a change on the last bar is not executed
        mark = CHUNK
        for j, target, op in zip(
            changed.tolist(), exact[changed].tolist(), bars.open[changed + 1].tolist(), strict=True
        ):
            while progress is not None and mark <= j + 1:
                progress(mark, n)
                mark += CHUNK
            execute(j + 1, op, target)
        while progress is not None and mark < n + CHUNK:
            progress(min(mark, n), n)
            mark += CHUNK
    else:
        scan = state.scan
        last = 0.0
        pending: float | None = None  # the target decided at the last bar's close, executed at this bar's open
        for start in range(0, n, CHUNK):
            # one chunk of Python floats at a time: a million-element list would be walked by every full GC pass
            end = min(n, start + CHUNK)
            size = end - start
            opens, highs, lows, closes = (a[start:end].tolist() for a in (bars.open, bars.high, bars.low, bars.close))
            k = 0
            while k < size:
                if pending is not None:
                    fed = start + k
                    execute(start + k, opens[k], pending)
                    pending = None
                # feed bars from k on until the target changes: an order, if any, goes at the next bar's open
                k, t = scan(opens, highs, lows, closes, k, size, last)
                if k < size:
                    last = pending = t
                k += 1
            if progress is not None:
                progress(end, n)

    close = bars.close
    position, cash_curve = step_curves(n, fill_bars, fill_pos, fill_cash, float(config.cash))
    equity = cash_curve + position * close
    last_close = to_decimal(float(close[-1]))
    trades = list(book.trades)
    open_trade = book.open_trade(last_close)
    if open_trade is not None:
        trades.append(open_trade)
    final_equity = cash + book.position * last_close
    result = BacktestResult(
        symbol=bars.symbol,
        strategy=strategy.name,
        params=strategy.params.model_dump(mode="json"),
        config=config,
        ts=bars.ts,
        close=close,
        equity=equity,
        position=position,
        trades=trades,
        denials=denials,
        final_equity=final_equity,
    )
    result.stats = compute_stats(
        bars.ts,
        equity,
        close,
        position,
        [float(t.pnl) for t in trades if not t.open],
        len(denials),
        float(fees),
        len(fill_bars),
        config.periods_per_year,
    )
    return result


def step_curves(
    n: int, fill_bars: list[int], fill_pos: list[float], fill_cash: list[float], cash0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Position and cash after each bar, from their values after each fill bar."""
    position = np.zeros(n)
    cash = np.full(n, cash0)
    if fill_bars:
        idx = np.searchsorted(np.asarray(fill_bars), np.arange(n), side="right") - 1
        has = idx >= 0
        position[has] = np.asarray(fill_pos)[idx[has]]
        cash[has] = np.asarray(fill_cash)[idx[has]]
    return position, cash
