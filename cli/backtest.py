"""`trading-mcp backtest`: run a strategy over historical bars, or sweep its parameters."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

LONG_RUN_BARS = 100_000
STAT_ROWS = (
    ("total_return", "Total return", "pct+"),
    ("buy_and_hold_return", "Buy & hold return", "pct+"),
    ("cagr", "CAGR", "pct+"),
    ("annualized_volatility", "Annualized volatility", "pct"),
    ("sharpe", "Sharpe ratio", "num"),
    ("sortino", "Sortino ratio", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("trades", "Closed trades", "int"),
    ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "num"),
    ("expectancy", "Expectancy per trade", "money"),
    ("exposure", "Exposure time", "pct"),
    ("fees", "Fees paid", "money"),
    ("orders", "Orders filled", "int"),
    ("denied_orders", "Orders denied by risk", "int"),
    ("final_equity", "Final equity", "money"),
)


def add_backtest_parser(sub: Any) -> None:
    bt = sub.add_parser(
        "backtest",
        help="backtest a strategy on historical bars (or sweep its parameters)",
        description="Decisions on bar t's close fill at bar t+1's open through the risk gate and matching engine.",
    )
    bt.add_argument("--strategy", required=True, help="momentum | mean_reversion | hybrid")
    bt.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="strategy parameter, repeatable (a.b=v nests)"
    )
    bt.add_argument("--data", required=True, help="CSV file with time,open,high,low,close[,volume], or bundled:AAPL")
    bt.add_argument("--symbol", default=None, help="symbol to pick from the data (and to label the run)")
    bt.add_argument("--start", default=None, metavar="DATE", help="first bar's date, ISO (default: the data's first)")
    bt.add_argument("--end", default=None, metavar="DATE", help="last bar's date, ISO (default: the data's last)")
    bt.add_argument(
        "--bars", type=int, default=None, metavar="N", help="N bars: the last N, or the first N from --start"
    )
    bt.add_argument("--cash", default="100000", help="starting equity (default 100000, the paper account's)")
    bt.add_argument(
        "--commission", default="0", help="fraction of traded notional per fill (default 0, as the simulator's)"
    )
    bt.add_argument("--slippage-bps", default="0", help="fills move this many bps against you (default 0)")
    bt.add_argument("--fractional", action="store_true", help="trade fractional units instead of whole ones")
    bt.add_argument("--max-position", default=None, help="risk gate: max absolute units (default: no limit)")
    bt.add_argument("--periods-per-year", type=float, default=None, help="annualization (default: from bar spacing)")
    bt.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    bt.add_argument("--plot", default=None, metavar="OUT.png", help="save a chart: price + trades, equity, drawdown")
    bt.add_argument("--sweep", action="append", default=[], metavar="K=A..B[:STEP]", help="sweep one or two params")
    bt.add_argument("--rank-by", default="sharpe", help="sweep ranking statistic (default sharpe)")
    bt.add_argument("--top", type=int, default=10, help="sweep rows to show (default 10)")
    bt.add_argument(
        "--progress", action="store_true", help="show a progress bar on stderr even when it is not a terminal"
    )
    bt.set_defaults(func=cmd_backtest)


def _decimal(name: str, raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise _Usage("invalid_option", f"--{name} must be a number, got {raw!r}") from None


class _Usage(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def cmd_backtest(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from execsim.backtest import BacktestConfig, BacktestError
    from strategies import StrategyError

    try:
        try:
            config = BacktestConfig(
                cash=_decimal("cash", args.cash),
                commission=_decimal("commission", args.commission),
                slippage_bps=_decimal("slippage-bps", args.slippage_bps),
                fractional=args.fractional,
                max_position=_decimal("max-position", args.max_position),
                periods_per_year=args.periods_per_year,
            )
        except ValidationError as e:
            raise _Usage(
                "invalid_option", "; ".join(f"--{err['loc'][0]}: {err['msg']}".replace("_", "-") for err in e.errors())
            ) from None
        return _run_sweep(args, config) if args.sweep else _run_single(args, config)
    except (StrategyError, BacktestError, _Usage) as e:
        print(f"error [{e.code}]: {e.message}", file=sys.stderr)
        return 2


def _progress(total: int, unit: str, enabled: bool, forced: bool = False) -> Any:
    """A tqdm bar on stderr: when `forced` (--progress), else when `enabled` and stderr is a terminal."""
    from tqdm import tqdm

    disable = False if forced else None if enabled else True  # None: tqdm shows it on a terminal only
    bar = tqdm(total=total, unit=unit, disable=disable, file=sys.stderr, leave=False)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    return bar, update


def _bars(args: argparse.Namespace) -> Any:
    """The data, cut to --start/--end/--bars."""
    from execsim.backtest import resolve
    from execsim.backtest.window import parse_when, select

    start, end = parse_when("--start", args.start), parse_when("--end", args.end)
    return select(resolve(args.data, args.symbol), start, end, args.bars)


def _run_single(args: argparse.Namespace, config: Any) -> int:
    from execsim.backtest import run_backtest
    from strategies import build_strategy, parse_params

    strategy = build_strategy(args.strategy, parse_params(args.param))
    bars = _bars(args)
    bar, update = _progress(len(bars), "bar", len(bars) >= LONG_RUN_BARS, args.progress)
    try:
        result = run_backtest(strategy, bars, config, progress=update)
    finally:
        bar.close()
    if args.plot:
        from execsim.backtest.plot import plot_result

        plot_result(result, args.plot)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    _print_report(result, bars)
    if args.plot:
        print(f"\nchart saved to {args.plot}")
    return 0


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "pct+":
        return f"{value * 100:+,.2f} %"
    if kind == "pct":
        return f"{value * 100:,.2f} %"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "money":
        return f"{value:,.2f}"
    return f"{value:,.3f}"


def _print_report(result: Any, bars: Any) -> None:
    s = result.stats
    params = " ".join(f"{k}={v}" for k, v in _flat(result.params).items())
    print(
        f"{result.strategy} on {result.symbol}: {bars.time(0):%Y-%m-%d} -> {bars.time(len(bars) - 1):%Y-%m-%d}, "
        f"{len(bars):,} bars"
    )
    print(f"params: {params}")
    print(costs_line(result.config))
    print()
    width = max(len(label) for _, label, _ in STAT_ROWS)
    for key, label, kind in STAT_ROWS:
        print(f"  {label:<{width}}  {_fmt(s.get(key), kind):>16}")
    trades = result.trades
    if trades:
        shown = trades[-10:]
        print(f"\n{'last ' + str(len(shown)) + ' of ' if len(trades) > len(shown) else ''}{len(trades)} trades:")
        print(
            f"  {'entry':<10}  {'exit':<10}  {'side':<5}  {'qty':>10}  {'entry px':>10}  {'exit px':>10}  {'pnl':>12}"
        )
        for t in shown:
            exit_at = f"{t.exit_time:%Y-%m-%d}" if t.exit_time else "open"
            print(
                f"  {t.entry_time:%Y-%m-%d}  {exit_at:<10}  {t.side:<5}  {float(t.quantity):>10,.4g}  "
                f"{float(t.entry_price):>10,.4f}  {float(t.exit_price):>10,.4f}  {float(t.pnl):>12,.2f}"
            )


def costs_line(config: Any) -> str:
    """This run's cash, costs and risk limit beside the live paper account's defaults, so a difference shows."""
    from authority.settings import AuthoritySettings
    from execsim.settings import ExecSimSettings
    from schemas.risk import paper_defaults

    live = ExecSimSettings.model_fields
    cash = AuthoritySettings.model_fields["starting_cash"].default
    limit = paper_defaults(cash)["max_position"]
    mine = "none" if config.max_position is None else config.max_position
    bps = (config.commission * 10_000).normalize()
    return (
        f"backtest: cash {config.cash}, commission {config.commission} ({bps:f} bps), "
        f"slippage {config.slippage_bps} bps, max position {mine}\n"
        f"live paper account defaults: cash {cash}, fee {live['fee_bps'].default} bps, slippage "
        f"{live['slippage_bps'].default} bps, max position {limit} (`trading-mcp up --fee-bps/--slippage-bps/"
        "--max-position` change them)"
    )


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _run_sweep(args: argparse.Namespace, config: Any) -> int:
    from execsim.backtest.sweep import parse_axis, run_sweep
    from strategies import parse_params

    axes = [parse_axis(s) for s in args.sweep]
    bars = _bars(args)
    total = 1
    for a in axes:
        total *= len(a.values)
    bar, update = _progress(total, "set", True, args.progress)
    try:
        result = run_sweep(args.strategy, parse_params(args.param), axes, bars, config, args.rank_by, update)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    keys = [a.key for a in axes]
    print(
        f"sweep of {args.strategy} on {bars.symbol}: {len(result.rows)} parameter sets over {len(bars):,} bars "
        f"({bars.time(0):%Y-%m-%d} -> {bars.time(len(bars) - 1):%Y-%m-%d}), ranked by {args.rank_by}"
        + (f" ({len(result.skipped)} invalid sets skipped)" if result.skipped else "")
    )
    print(costs_line(config))
    cols = ["sharpe", "total_return", "max_drawdown", "trades", "win_rate"]
    if args.rank_by not in cols:
        cols.insert(0, args.rank_by)
    kinds = {key: kind for key, _, kind in STAT_ROWS}
    header = "  ".join([f"{'#':>3}"] + [f"{k:>12}" for k in keys] + [f"{c:>14}" for c in cols])
    print(header)
    for rank, row in enumerate(result.rows[: args.top], 1):
        cells = [f"{rank:>3}"] + [f"{row.params[k]!s:>12}" for k in keys]
        cells += [f"{_fmt(row.stats.get(c), kinds.get(c, 'num')):>14}" for c in cols]
        print("  ".join(cells))
    return 0
