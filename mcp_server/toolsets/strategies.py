"""strategies: the catalog, one strategy's decision on a symbol's history, and backtests."""

from __future__ import annotations

import concurrent.futures
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import anyio.from_thread
import structlog
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.types import CallToolResult, ResourceLink, TextContent
from pydantic import BaseModel, Field

from bus.account_view import AppState
from mcp_server.backtest_runs import (
    ARTIFACTS,
    MAX_RUNS,
    BacktestCancelled,
    Job,
    Run,
    RunStore,
    UnknownRun,
    run_in_chunks,
    runs_of,
)
from mcp_server.bars import bars_oldest_first
from mcp_server.tooling import READ_ONLY, SymbolArg, ToolFailure, add_tools, app, pct, qty, reply
from mcp_server.toolsets import Toolset
from mcp_server.toolsets.strategy_catalog import StrategyInfo, catalog
from schemas.common import Money
from schemas.decisions import Decision
from schemas.risk import PAPER_STARTING_CASH
from strategies.base import Strategy, StrategyError
from strategies.registry import STRATEGIES, build_strategy

if TYPE_CHECKING:
    from execsim.backtest.data import Bars

log = structlog.get_logger("mcp_server")

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


class BacktestArtifacts(BaseModel):
    trades: str = Field(description="Every trade as JSON (resources/read this URI)")
    equity: str = Field(description="The equity curve as CSV, one row per bar")
    plot: str = Field(description="Price, equity against buy-and-hold and drawdown as a PNG")


class BacktestReport(BaseModel):
    run_id: str = Field(description="Names this run's artifacts; the server keeps the last 20 runs")
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
    artifacts: BacktestArtifacts = Field(description="Resource URIs of the full trade list, equity curve and plot")


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
    signals = await app(ctx).recent_signals(HISTORY, symbol)
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
        text += "\n" + _against_the_account(app(ctx), symbol, decision.target, bars[-1].close)
    return reply(result, text)


def _against_the_account(state: AppState, symbol: str, target: float, last: Decimal) -> str:
    """Where the account stands against the target, and when (if ever) the difference would be traded."""
    portfolio = state.portfolio
    held = portfolio.quantity(symbol)
    equity = portfolio.equity()
    price = portfolio.mark_price(symbol) or last
    now = float(held * price / equity) if equity > 0 else 0.0
    if abs(now - target) < 0.005:
        return f"The account holds {qty(held)} {symbol} ({pct(now, signed=True)} of equity): already at the target."
    return (
        f"The account holds {qty(held)} {symbol} ({pct(now, signed=True)} of equity), not the target. "
        "evaluate_strategy places nothing. A bridge running this strategy (strategy mode) trades toward it when the "
        "next signal closes a bar, filled at the following bar's open; to trade now, use preview_order."
    )


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
Cash = Annotated[Decimal, Field(default=PAPER_STARTING_CASH, gt=0, le=Decimal(10**9), description="Starting equity")]
Date = Annotated[str | None, Field(default=None, max_length=32, description="ISO date, e.g. 2004-01-02")]
BarCount = Annotated[
    int | None, Field(default=None, ge=2, le=10_000_000, description="The last N bars, or the first N from start")
]
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
    cash: Cash = PAPER_STARTING_CASH,
    max_trades: MaxTrades = 20,
    start: Date = None,
    end: Date = None,
    bars: BarCount = None,
) -> Annotated[CallToolResult, BacktestReport]:
    """Backtest a strategy on one symbol: each bar is seen at its close, a target change trades at
    the next bar's open, commission is charged on every fill. Runs on the symbol's stored signal
    history, or on real bundled daily data (`data="bundled"` or symbol `bundled:AAPL`). Reports
    progress while it runs and can be cancelled. Returns a summary with the latest trades, and
    resource links to every trade (JSON), the equity curve (CSV) and a plot (PNG). Simulation only."""
    # the backtester pulls in pandas: imported on first use, so the server starts faster
    from execsim.backtest.errors import BacktestError
    from execsim.backtest.result import BacktestConfig
    from execsim.backtest.window import parse_when

    try:
        window = (parse_when("start", start), parse_when("end", end), bars)
    except BacktestError as exc:
        raise ToolFailure("invalid_arguments", exc.message) from exc
    if symbol.lower().startswith("bundled:"):
        symbol, data = symbol.split(":", 1)[1], "bundled"
    symbol = symbol.upper()
    built = _strategy(strategy, params)
    config = BacktestConfig(cash=cash, commission=commission)
    store = runs_of(ctx.mcp_server)
    await ctx.report_progress(0, 1, f"loading {data} bars for {symbol}")
    job = store.new_job()
    try:
        used, result = await _run_job(ctx, job, store, built, symbol, data, config, window)
    except BacktestError as exc:
        code = "no_data" if exc.code in ("data_symbol_not_found", "data_too_short") else "invalid_arguments"
        raise ToolFailure(code, f"{exc}") from exc
    finally:
        store.end_job(job)
    run = store.keep(job.run_id, result, used)
    trades = [t.to_json() for t in result.trades]
    shown = trades[-max_trades:] if max_trades else []
    report = BacktestReport(
        run_id=run.run_id,
        symbol=symbol,
        data=data,  # type: ignore[arg-type]
        strategy=strategy,
        params=result.params,
        bars=len(used),
        first_bar=used.time(0).isoformat(),
        last_bar=used.time(len(used) - 1).isoformat(),
        cash=cash,
        commission=commission,
        final_equity=result.final_equity,
        stats=result.stats,
        trades_total=len(trades),
        trades=shown,
        denials=len(result.denials),
        artifacts=BacktestArtifacts(**{name: run.uri(name) for name in ARTIFACTS}),
    )
    links = [
        ResourceLink(name=f"{run.run_id} {file}", uri=run.uri(name), mime_type=mime, description=what)
        for name, (file, mime, what) in ARTIFACTS.items()
    ]
    return CallToolResult(
        content=[TextContent(type="text", text=_backtest_text(report, len(shown))), *links],
        structured_content=report.model_dump(mode="json"),
    )


JOIN_S = 10.0  # a cancelled worker stops at its next chunk (milliseconds); this only bounds a stuck one


async def _run_job(
    ctx: Context, job: Job, store: RunStore, built: Strategy, symbol: str, data: str, config: Any, window: Any
) -> tuple[Bars, Any]:
    """The backtest in a worker thread, progress after each chunk; a cancelled call stops the worker and waits
    until it has returned, so nothing is left running."""

    if data != "bundled":
        await app(ctx).signals_loaded()  # `_bars` reads the signal log from the worker thread

    def report(done: int, total: int) -> None:
        try:
            anyio.from_thread.run(ctx.report_progress, done, total, f"{done} of {total} bars")
        except concurrent.futures.CancelledError as exc:  # the call was cancelled while reporting
            raise BacktestCancelled from exc

    def work() -> tuple[Bars, Any]:
        try:
            from execsim.backtest.window import select

            bars = select(_bars(ctx, symbol, data), *window)
            result = run_in_chunks(job, built, bars, config, report, store.after_chunk)
            job.outcome = "done"
            return bars, result
        except BacktestCancelled:
            job.outcome = "cancelled"
            raise
        except BaseException:
            job.outcome = "failed"
            raise
        finally:
            job.finished.set()

    try:
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        job.cancel()
        with anyio.CancelScope(shield=True):
            if not await anyio.to_thread.run_sync(job.finished.wait, JOIN_S):
                log.warning("a cancelled backtest is still running", run_id=job.run_id, bars_done=job.reported)
        raise


def _backtest_text(report: BacktestReport, shown: int) -> str:
    """What a text-only client reads: the result against buy-and-hold, the trades and where to fetch them."""
    s = report.stats
    cents = Decimal("0.01")
    risk = "; ".join(
        part
        for part in (
            f"CAGR {pct(s['cagr'])}" if s.get("cagr") is not None else "",
            f"Sharpe {s['sharpe']:.2f}" if isinstance(s.get("sharpe"), float) else "",
            f"max drawdown {pct(abs(s['max_drawdown']))}" if s.get("max_drawdown") is not None else "",
            f"win rate {pct(s['win_rate'])}" if s.get("win_rate") is not None else "",
        )
        if part
    )
    listed = f"the last {shown} are in the result" if 0 < shown < report.trades_total else ""
    listed = "all are in the result" if shown and shown == report.trades_total else listed
    return (
        f"{report.strategy} on {report.symbol} ({report.data}, {report.bars} bars {report.first_bar[:10]} to "
        f"{report.last_bar[:10]}): equity {report.cash.quantize(cents)} -> {report.final_equity.quantize(cents)}, "
        f"return {pct(s.get('total_return'), signed=True)} against buy-and-hold "
        f"{pct(s.get('buy_and_hold_return'), signed=True)}."
        f"\n{risk or 'no ratios: too few bars'}; fees {Decimal(str(s.get('fees', 0))).quantize(cents)}."
        f"\n{report.trades_total} trade(s){f' ({listed})' if listed else ''}; "
        f"every trade: resources/read {report.artifacts.trades}"
        f"\nequity curve (CSV, one row per bar): {report.artifacts.equity}\nplot (PNG): {report.artifacts.plot}"
        f"\nrun id {report.run_id}: the server keeps the last {MAX_RUNS} runs' artifacts in memory."
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

    _register_backtest_artifacts(server)


def _register_backtest_artifacts(server: MCPServer[AppState]) -> None:
    """backtest://<run_id>/trades.json, equity.csv and plot.png: what run_backtest links to."""
    store = runs_of(server)

    def find(run_id: str) -> Run:
        try:
            return store.get(run_id)
        except UnknownRun as exc:
            raise ResourceNotFoundError(str(exc)) from exc

    file, mime, what = ARTIFACTS["trades"]

    @server.resource(f"backtest://{{run_id}}/{file}", name="backtest_trades", description=what, mime_type=mime)
    async def backtest_trades(run_id: str) -> str:
        return find(run_id).trades_json()

    file, mime, what = ARTIFACTS["equity"]

    @server.resource(f"backtest://{{run_id}}/{file}", name="backtest_equity", description=what, mime_type=mime)
    async def backtest_equity(run_id: str) -> str:
        return await anyio.to_thread.run_sync(find(run_id).equity_csv)  # type: ignore[no-any-return]

    file, mime, what = ARTIFACTS["plot"]

    @server.resource(f"backtest://{{run_id}}/{file}", name="backtest_plot", description=what, mime_type=mime)
    async def backtest_plot(run_id: str) -> bytes:
        return await anyio.to_thread.run_sync(find(run_id).plot_png)  # type: ignore[no-any-return]


assert set(STRATEGIES) == {"momentum", "mean_reversion", "hybrid"}, "StrategyName must list every strategy"

TOOLSET = Toolset("strategies", "Strategy catalog, evaluation on a symbol, and backtests", _register)
