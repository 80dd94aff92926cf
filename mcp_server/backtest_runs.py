"""run_backtest as long work: a worker thread that runs the backtest in chunks (progress after each one, a
cancel flag checked between them), and the runs kept afterwards for their artifacts.

- A run's artifacts (every trade as JSON, the equity curve as CSV, the plot as PNG) stay in memory for the
  last `MAX_RUNS` runs of a server, keyed by run id, and are read as resources
  `backtest://<run_id>/trades.json`, `.../equity.csv`, `.../plot.png`. An older run is evicted.
- The backtester (`execsim.backtest.runner`) calls its progress hook only every 32k bars, so the strategy's
  per-bar `update` is wrapped instead: every `chunk` bars the worker reports, and stops if asked to.
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mcp.server.mcpserver import MCPServer

if TYPE_CHECKING:
    from execsim.backtest.data import Bars
    from execsim.backtest.result import BacktestConfig, BacktestResult
    from strategies.base import Strategy

MAX_RUNS = 20
PROGRESS_STEPS = 50  # about this many progress notifications per run
SCHEME = "backtest"
ARTIFACTS = {
    "trades": ("trades.json", "application/json", "Every trade of the run (entry, exit, quantity, PnL, fees)"),
    "equity": ("equity.csv", "text/csv", "Equity curve: time, close, position, equity, one row per bar"),
    "plot": ("plot.png", "image/png", "Price with entries and exits, equity against buy-and-hold, drawdown"),
}
_PLOT_LOCK = threading.Lock()  # pyplot keeps global state: one figure at a time


class BacktestCancelled(Exception):
    """The client cancelled the call: the worker stops at the next chunk."""


class UnknownRun(LookupError):
    pass


@dataclass
class Job:
    """One backtest in its worker thread. `cancel()` is honoured at the next chunk; `finished` is set when the
    worker has returned, whatever the outcome."""

    run_id: str
    total: int = 0
    reported: int = 0
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    outcome: str = "running"  # running, done, cancelled, failed

    def cancel(self) -> None:
        self.cancel_requested.set()


@dataclass
class Run:
    run_id: str
    result: BacktestResult
    bars: Bars
    _png: bytes | None = None

    def uri(self, artifact: str) -> str:
        return f"{SCHEME}://{self.run_id}/{ARTIFACTS[artifact][0]}"

    def trades_json(self) -> str:
        r = self.result
        return json.dumps(
            {
                "run_id": self.run_id,
                "symbol": r.symbol,
                "strategy": r.strategy,
                "params": r.params,
                "trades": [t.to_json() for t in r.trades],
            }
        )

    def equity_csv(self) -> str:
        out = io.StringIO()
        out.write("time,close,position,equity\n")
        r = self.result
        for i, (close, position, equity) in enumerate(zip(r.close, r.position, r.equity, strict=True)):
            out.write(f"{self.bars.time(i).isoformat()},{float(close)!r},{float(position)!r},{float(equity):.2f}\n")
        return out.getvalue()

    def plot_png(self) -> bytes:
        """Rendered on first read (headless, Agg), then kept with the run."""
        if self._png is None:
            from execsim.backtest.plot import plot_result

            with _PLOT_LOCK, tempfile.TemporaryDirectory() as tmp:
                self._png = plot_result(self.result, Path(tmp) / "plot.png").read_bytes()
        return self._png


class RunStore:
    """The last `capacity` runs by id, and the jobs still running."""

    def __init__(self, capacity: int = MAX_RUNS) -> None:
        self.capacity = capacity
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        # called in the worker after each chunk's progress report; tests use it to hold a run mid-way
        self.after_chunk: Callable[[Job], None] | None = None

    def new_job(self) -> Job:
        job = Job(uuid.uuid4().hex[:12])
        with self._lock:
            self.jobs[job.run_id] = job
        return job

    def end_job(self, job: Job) -> None:
        with self._lock:
            self.jobs.pop(job.run_id, None)

    def keep(self, run_id: str, result: BacktestResult, bars: Bars) -> Run:
        run = Run(run_id, result, bars)
        with self._lock:
            self._runs[run_id] = run
            while len(self._runs) > self.capacity:
                self._runs.popitem(last=False)
        return run

    def get(self, run_id: str) -> Run:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise UnknownRun(
                f"no backtest run {run_id!r} here: this server keeps the artifacts of its last {self.capacity} "
                "runs in memory (older ones are evicted, and a restart forgets them all); call run_backtest again"
            )
        return run

    def __len__(self) -> int:
        return len(self._runs)


_STORES: weakref.WeakKeyDictionary[MCPServer[Any], RunStore] = weakref.WeakKeyDictionary()


def runs_of(server: MCPServer[Any]) -> RunStore:
    """The run store of one server (each server built in a process has its own)."""
    store = _STORES.get(server)
    if store is None:
        store = _STORES[server] = RunStore()
    return store


class _Paced:
    """A strategy whose per-symbol state calls `checkpoint(bars_seen)` every `every` bars."""

    def __init__(self, inner: Strategy, every: int, checkpoint: Callable[[int], None]) -> None:
        self._inner = inner
        self._every = every
        self._checkpoint = checkpoint

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def new_state(self, symbol: str) -> Any:
        state = self._inner.new_state(symbol)
        update = state.update
        every, checkpoint = self._every, self._checkpoint
        seen = 0

        def paced_update(open: float, high: float, low: float, close: float) -> float:  # noqa: A002
            nonlocal seen
            seen += 1
            if seen % every == 0:
                checkpoint(seen)
            return update(open, high, low, close)

        state.update = paced_update  # type: ignore[method-assign]
        return state


def run_in_chunks(
    job: Job,
    strategy: Strategy,
    bars: Bars,
    config: BacktestConfig,
    report: Callable[[int, int], None],
    after_chunk: Callable[[Job], None] | None = None,
) -> BacktestResult:
    """Run the backtest in this (worker) thread; raise BacktestCancelled at the first chunk after a cancel."""
    from execsim.backtest.runner import run_backtest

    job.total = n = len(bars)

    def checkpoint(done: int) -> None:
        if job.cancel_requested.is_set():
            raise BacktestCancelled
        if done > job.reported:
            job.reported = done
            report(done, n)
        if after_chunk is not None:
            after_chunk(job)
        if job.cancel_requested.is_set():
            raise BacktestCancelled

    paced = cast("Strategy", _Paced(strategy, max(1, n // PROGRESS_STEPS), checkpoint))
    return run_backtest(paced, bars, config, lambda done, _total: checkpoint(done))
