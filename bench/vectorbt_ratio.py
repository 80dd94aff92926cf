"""Our fastest MA-cross backtest against vectorbt's (numba) on the same 1,000,000 bars and the same trades.

Target (issue 15, 2 cores): our time ≤ 2 × vectorbt's warm time.

- vectorbt is never a dependency of trading-mcp: it is installed into its own venv outside the repository,
  `~/.cache/trading-mcp-bench/vectorbt-venv` (or $TRADING_MCP_VECTORBT_VENV), created on the first run and
  reused, and run there in a subprocess. If it cannot be installed this prints why and exits 2: no number
  is made up.
- The bars: the documented synthetic series of bench/backtest_speed.py (1M one-minute bars, log price
  mean-reverting around 100 with 500-bar trend regimes; the bundled real data holds ~3,000 daily bars per
  symbol, far from 1M), written once to a temporary .npz that both sides read.
- The strategy: SMA 10 / SMA 50, long only, decided at a bar's close and filled at the next bar's open, no fees,
  no slippage, all equity in whole units (vectorbt: size=inf, size_granularity=1; a granularity of 1e-4 leaves
  float dust positions that block its later entries). Both compute their own moving averages.
- Ours: the sweep's single-set path (`execsim.backtest.sweep.evaluate`: the vectorized strategy twin, then
  the orders through the live risk gate with the engine's fill rules, trades and statistics). vectorbt:
  `vbt.MA.run` + `Portfolio.from_signals` + its value curve and trade records. Each side is timed warm (after
  one untimed run that compiles numba / fills caches), best of REPEATS.
- Checked: the same number of trades with the same entry and exit bars, sizes and final equity within 1e-5
  relative. Not exactly equal: vectorbt floors cash / price in floats, we size in Decimal, so now and then a
  size differs by one unit; the equity gap that leaves (~1e-6) then compounds into a unit or two of size at
  an equity of 88M.

`OPENBLAS_CORETYPE` / `OPENBLAS_L2_SIZE` are removed from the environment of this process and of the
vectorbt subprocess only (they slow a current numpy; see docs on the benchmark machines).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backtest_speed import synthetic  # noqa: E402

from execsim.backtest.broker import risk_limits  # noqa: E402
from execsim.backtest.result import BacktestConfig  # noqa: E402
from execsim.backtest.sweep import evaluate  # noqa: E402
from strategies import BatchData, build_strategy  # noqa: E402
from tools.risk import RiskGate  # noqa: E402

FAST, SLOW = 10, 50
CASH = 100_000.0
REPEATS = 5
VENV = Path(os.environ.get("TRADING_MCP_VECTORBT_VENV", Path.home() / ".cache" / "trading-mcp-bench" / "vectorbt-venv"))
CONFIG = BacktestConfig(cash=Decimal(int(CASH)), commission=Decimal(0), fractional=False)

CHILD = r"""
import json, sys, time
import numpy as np
import vectorbt as vbt

FAST, SLOW, CASH, REPEATS = {fast}, {slow}, {cash}, {repeats}
data = np.load(sys.argv[1])
open_, close = data["open"], data["close"]


def run():
    ma = vbt.MA.run(close, [FAST, SLOW], short_name="ma")
    f, s = ma.ma.values[:, 0], ma.ma.values[:, 1]
    d = f - s
    tol = 1e-9 * np.abs(s)
    above, below = d > tol, d < -tol  # the same tie rule as ours: inside the tolerance the target is kept
    entries = np.r_[False, above[:-1]]  # decided at bar t's close, filled at bar t+1's open
    exits = np.r_[False, below[:-1]]
    pf = vbt.Portfolio.from_signals(
        close, entries, exits, price=open_, init_cash=CASH, size=np.inf, size_granularity=1.0,
        fees=0.0, direction="longonly", freq="1min",
    )
    value = pf.value().values
    trades = pf.trades.records
    return value, trades


run()  # compile (numba) and warm the caches
times = []
for _ in range(REPEATS):
    t0 = time.perf_counter()
    value, trades = run()
    times.append(time.perf_counter() - t0)
print(json.dumps({{
    "times": times,
    "versions": {{"vectorbt": vbt.__version__, "numpy": np.__version__}},
    "final_equity": float(value[-1]),
    "entry": trades["entry_idx"].tolist(),
    "exit": trades["exit_idx"].tolist(),
    "open": (trades["status"] == 0).tolist(),
    "size": trades["size"].tolist(),
    "pnl": trades["pnl"].tolist(),
}}))
"""


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import vectorbt, numba"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {VENV} and installing vectorbt into it (once; never into the project's venv)")
    VENV.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(python), "-m", "pip", "install", "-q", "vectorbt"],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"\nvectorbt could not be installed: {' '.join(cmd)} exited {done.returncode}", file=sys.stderr)
            print((done.stderr or done.stdout)[-2000:], file=sys.stderr)
            print("no comparison made: no vectorbt time, no ratio", file=sys.stderr)
            sys.exit(2)
    if subprocess.run(probe, capture_output=True).returncode != 0:
        print("vectorbt installed but does not import; no comparison made", file=sys.stderr)
        sys.exit(2)
    return python


def ours(bars, repeats: int) -> tuple[list[float], dict, list]:  # type: ignore[no-untyped-def]
    strategy = build_strategy("momentum", {"variant": "ma_cross", "fast": FAST, "slow": SLOW, "long_only": True})

    def run() -> tuple[dict, list]:
        data = BatchData(bars.open, bars.high, bars.low, bars.close)
        gate = RiskGate(risk_limits(CONFIG.max_position))
        return evaluate(strategy, data, bars, CONFIG, gate)

    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stats, trades = run()
        times.append(time.perf_counter() - t0)
    return times, stats, trades


def main() -> int:
    python = ensure_venv()
    t0 = time.perf_counter()
    bars = synthetic()
    print(f"vectorbt_ratio — {os.cpu_count()} CPUs; {len(bars):,} synthetic bars in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory(prefix="trading-mcp-vbt-") as tmp:
        path = Path(tmp) / "bars.npz"
        np.savez(path, open=bars.open, high=bars.high, low=bars.low, close=bars.close)
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        code = CHILD.format(fast=FAST, slow=SLOW, cash=CASH, repeats=REPEATS)
        done = subprocess.run([str(python), "-c", code, str(path)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(f"the vectorbt run failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return 2
    vbt = json.loads(done.stdout.strip().splitlines()[-1])
    our_times, stats, trades = ours(bars, REPEATS)

    # the same trades: count, entry and exit bars, sizes; the same final equity
    our_entry = [t.entry_bar for t in trades]
    our_exit = [t.exit_bar if t.exit_bar is not None else -1 for t in trades]
    their_exit = [-1 if is_open else e for e, is_open in zip(vbt["exit"], vbt["open"], strict=True)]
    same_bars = our_entry == vbt["entry"] and our_exit == their_exit
    size_gap = max((abs(t.quantity / s - 1.0) for t, s in zip(trades, vbt["size"], strict=False)), default=0.0)
    our_equity = CASH * (1.0 + stats["total_return"])
    equity_gap = abs(our_equity - vbt["final_equity"]) / vbt["final_equity"]
    same = same_bars and len(trades) == len(vbt["entry"]) and size_gap <= 1e-5 and equity_gap <= 1e-5

    ours_best, theirs_best = min(our_times), min(vbt["times"])
    print(f"vectorbt {vbt['versions']['vectorbt']} (numpy {vbt['versions']['numpy']}), SMA {FAST}/{SLOW} long only")
    print(f"  trades: ours {len(trades):,}, vectorbt {len(vbt['entry']):,}; same entry/exit bars: {same_bars}")
    print(f"  largest relative size difference {size_gap:.1e}; final equity ours {our_equity:,.2f}, ", end="")
    print(f"vectorbt {vbt['final_equity']:,.2f} (relative gap {equity_gap:.1e})")
    print(f"  ours      min {ours_best:.3f} s  median {float(np.median(our_times)):.3f} s  (sweep.evaluate)")
    print(f"  vectorbt  min {theirs_best:.3f} s  median {float(np.median(vbt['times'])):.3f} s  (warm)")
    ratio = ours_best / theirs_best
    print(f"  ratio ours / vectorbt: {ratio:.2f}x  {'ok' if ratio <= 2.0 else 'ABOVE 2x'}")
    if not same:
        print("TRADES DIFFER: the times are not comparable", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
