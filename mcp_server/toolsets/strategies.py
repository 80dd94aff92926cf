"""strategies: the catalog, one strategy's decision on a symbol's history, and backtests."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import anyio.from_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from mcp_server.bars import bars_oldest_first
from mcp_server.state import AppState
from mcp_server.tooling import READ_ONLY, SymbolArg, ToolFailure, add_tools, app, pct, reply
from mcp_server.toolsets import Toolset
from mcp_server.toolsets.strategy_catalog import StrategyInfo, catalog
from schemas.common import Money
from schemas.decisions import Decision
from strategies.base import Strategy, StrategyError
from strategies.registry import STRATEGIES, build_strategy

if TYPE_CHECKING:
    from execsim.backtest.data import Bars

HISTORY = 10_000  # signals read per symbol: the signal log holds at most this many in all
StrategyName = Annotated[
    Literal["momentum", "mean_reversion", "hybrid"], Field(description="Which strategy (list_strategies shows them)")
]
Params = Annotated[
    dict[str, Any] | None,
    Field(
        default=None,
        description='Parameter overrides by name, e.g. {"lookback": 60} or for hybrid '
        '{"momentum": {"variant": "ma_cross"}}; omit for the defaults',
    ),
]


class CatalogResult(BaseModel):
    strategies: list[StrategyInfo]


class EvaluationResult(BaseModel):
    symbol: str
    strategy: str
    bars_used: int = Field(description="Bars of the symbol's signal history fed to the strategy, oldest first")
    bars_needed: int = Field(description="Bars the strategy needs before its first ready decision")
    decision: Decision


class BacktestReport(BaseModel):
    symbol: str
    data: Literal["signals", "bundled"]
    strategy: str
    params: dict[str, Any]
    bars: int
    first_bar: str
    last_bar: str
    cash: Money
    commission: Money
    final_equity: Money
    stats: dict[str, Any] = Field(description="Total return, CAGR, Sharpe, max drawdown, trades, win rate, ...")
    trades_total: int
    trades: list[dict[str, Any]] = Field(description="The most recent trades (at most max_trades), oldest first")
    denials: int = Field(description="Orders the backtest's risk gate refused")


def _strategy(name: str, params: dict[str, Any] | None) -> Strategy:
    try:
        return build_strategy(name, params)
    except StrategyError as exc:
        raise ToolFailure(
            "invalid_arguments", f"params: {exc.message}. list_strategies shows each parameter with its range."
        ) from exc


async def list_strategies() -> Annotated[CallToolResult, CatalogResult]:
    """The strategies evaluate_strategy and run_backtest run: name, variants, bars needed, and
    each parameter's default and allowed range. Pass overrides as `params`."""
    result = CatalogResult(strategies=catalog())
    lines = []
    for s in result.strategies:
        variants = f" (variants: {', '.join(s.variants)})" if s.variants else ""
        params = ", ".join(f"{p.name}={json.dumps(p.default)}{_range(p.constraints)}" for p in s.parameters)
        lines.append(f"{s.name}{variants}, needs {s.warmup_bars} bars: {s.description}\n  params: {params}")
    return reply(result, "\n".join(lines))


def _range(bounds: dict[str, Any]) -> str:
    low = f"{bounds['ge']}" if "ge" in bounds else f">{bounds['gt']}" if "gt" in bounds else ""
    high = f"{bounds['le']}" if "le" in bounds else f"<{bounds['lt']}" if "lt" in bounds else ""
    return f" ({low}..{high})" if low or high else ""


def _value(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else json.dumps(x, default=str)


async def evaluate_strategy(
    ctx: Context, symbol: SymbolArg, strategy: StrategyName, params: Params = None
) -> Annotated[CallToolResult, EvaluationResult]:
    """One strategy's decision on the last bar of the symbol's signal history: side
    (buy/sell/flat/hold), target (signed fraction of equity), confidence and the indicator values
    behind it; status `insufficient_data` (and the bars missing) when history is too short."""
    built = _strategy(strategy, params)
    signals = app(ctx).signals.recent(HISTORY, symbol)
    if not signals:
        raise ToolFailure("no_data", f"no signals for {symbol} yet; list_signals shows which symbols have data")
    state = built.new_state(symbol)
    bars = bars_oldest_first(signals)
    for b in bars:
        state.update(float(b.open), float(b.high), float(b.low), float(b.close))
    decision = state.decision(bars[-1].time)
    result = EvaluationResult(
        symbol=symbol, strategy=strategy, bars_used=len(bars), bars_needed=built.warmup, decision=decision
    )
    if decision.status == "insufficient_data":
        text = (
            f"{strategy} on {symbol}: insufficient data — {len(bars)} bar(s) of history, {built.warmup} needed "
            "before the first decision. Hold; try run_backtest on bundled data to see the strategy at work."
        )
    else:
        why = ", ".join(f"{k}={_value(v)}" for k, v in decision.rationale.items())
        text = (
            f"{strategy} on {symbol} at {decision.ts:%Y-%m-%d %H:%M:%S}Z: {decision.side}, target "
            f"{pct(decision.target, signed=True)} of equity (was {pct(decision.previous_target, signed=True)}), "
            f"confidence {pct(decision.confidence)}.\n{decision.summary}\nrationale: {why}"
        )
    return reply(result, text)


DataSource = Annotated[
    Literal["signals", "bundled"],
    Field(
        description="signals: the symbol's stored signal history; bundled: real daily bars shipped with the "
        "server (AAPL, IBM, MSFT 2000-2013, GOOG from 2004, FB from 2012)"
    ),
]
Commission = Annotated[
    Decimal, Field(default=Decimal(0), ge=0, lt=Decimal("0.1"), description="Fee per fill, fraction of notional")
]
Cash = Annotated[Decimal, Field(default=Decimal(10_000), gt=0, le=Decimal(10**9), description="Starting equity")]
MaxTrades = Annotated[int, Field(default=20, ge=0, le=200, description="Most trades to list (the latest ones)")]


def _bars(ctx: Context, symbol: str, data: str) -> Bars:
    from execsim.backtest.data import from_dataframe, load_bundled

    if data == "bundled":
        return load_bundled(symbol)
    signals = app(ctx).signals.recent(HISTORY, symbol)
    if len(signals) < 2:
        raise ToolFailure(
            "no_data",
            f"{len(signals)} signal(s) stored for {symbol}; a backtest needs at least 2 bars. "
            "Use data='bundled' for real daily history.",
        )
    import pandas as pd

    history = bars_oldest_first(signals)
    frame = pd.DataFrame(
        {
            "time": [b.time for b in history],
            "open": [float(b.open) for b in history],
            "high": [float(b.high) for b in history],
            "low": [float(b.low) for b in history],
            "close": [float(b.close) for b in history],
        }
    ).drop_duplicates("time", keep="last")
    return from_dataframe(frame, symbol)


async def run_backtest(
    ctx: Context,
    symbol: Annotated[
        str, Field(pattern=r"^(?i:bundled:)?[A-Za-z0-9._/-]{1,32}$", description="e.g. AAPL, or bundled:AAPL")
    ],
    strategy: StrategyName,
    params: Params = None,
    data: DataSource = "signals",
    commission: Commission = Decimal(0),
    cash: Cash = Decimal(10_000),
    max_trades: MaxTrades = 20,
) -> Annotated[CallToolResult, BacktestReport]:
    """Backtest a strategy on one symbol: each bar is seen at its close, a target change trades at
    the next bar's open, commission is charged on every fill. Runs on the symbol's stored signal
    history, or on real bundled daily data (`data="bundled"` or symbol `bundled:AAPL`). Reports
    progress while it runs; returns the statistics and the latest trades. Simulation only."""
    # the backtester pulls in pandas: imported on first use, so the server starts faster
    from execsim.backtest.errors import BacktestError
    from execsim.backtest.result import BacktestConfig
    from execsim.backtest.runner import run_backtest as run

    if symbol.lower().startswith("bundled:"):
        symbol, data = symbol.split(":", 1)[1], "bundled"
    symbol = symbol.upper()
    built = _strategy(strategy, params)
    config = BacktestConfig(cash=cash, commission=commission)
    await ctx.report_progress(0, 1, f"loading {data} bars for {symbol}")

    def progress(done: int, total: int) -> None:
        anyio.from_thread.run(ctx.report_progress, done, total, f"{done} of {total} bars")

    def work() -> tuple[Bars, Any]:
        bars = _bars(ctx, symbol, data)
        return bars, run(built, bars, config, progress)

    try:
        bars, result = await anyio.to_thread.run_sync(work)
    except BacktestError as exc:
        code = "no_data" if exc.code in ("data_symbol_not_found", "data_too_short") else "invalid_arguments"
        raise ToolFailure(code, f"{exc}") from exc
    trades = [t.to_json() for t in result.trades]
    shown = trades[-max_trades:] if max_trades else []
    report = BacktestReport(
        symbol=symbol,
        data=data,  # type: ignore[arg-type]
        strategy=strategy,
        params=result.params,
        bars=len(bars),
        first_bar=bars.time(0).isoformat(),
        last_bar=bars.time(len(bars) - 1).isoformat(),
        cash=cash,
        commission=commission,
        final_equity=result.final_equity,
        stats=result.stats,
        trades_total=len(trades),
        trades=shown,
        denials=len(result.denials),
    )
    s = result.stats
    text = (
        f"{strategy} on {symbol} ({data}, {len(bars)} bars {report.first_bar[:10]} to {report.last_bar[:10]}): "
        f"equity {cash} -> {result.final_equity:.2f}; {_stat_line(s)}; {len(trades)} trade(s)"
        f"{f', the last {len(shown)} listed' if shown and len(shown) < len(trades) else ''}."
    )
    return reply(report, text)


def _stat_line(stats: dict[str, Any]) -> str:
    keys = ("total_return", "cagr", "sharpe", "max_drawdown", "win_rate")
    return ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k in keys if (v := stats.get(k)) is not None
    )


def _register(server: MCPServer[AppState], _state: AppState) -> None:
    add_tools(server, list_strategies, evaluate_strategy, run_backtest, annotations=READ_ONLY)

    @server.resource(
        "strategies://catalog",
        name="strategy_catalog",
        title="Strategy catalog",
        description="Every strategy with its variants and parameters (type, default, description), as JSON",
        mime_type="application/json",
    )
    async def catalog_resource() -> str:
        return CatalogResult(strategies=catalog()).model_dump_json()


assert set(STRATEGIES) == {"momentum", "mean_reversion", "hybrid"}, "StrategyName must list every strategy"

TOOLSET = Toolset("strategies", "Strategy catalog, evaluation on a symbol, and backtests", _register)
