"""A backtest as one picture: price with entries and exits, equity against buy-and-hold, drawdown."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from execsim.backtest.result import BacktestResult


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


def plot_result(result: BacktestResult, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    path = Path(path)
    t = result.ts.astype("datetime64[ms]").astype("O")
    times = np.array(t)
    close = result.close
    equity = result.equity
    start = float(result.config.cash)
    hold = start * close / close[0]
    drawdown = equity / np.maximum.accumulate(equity) - 1.0
    s = result.stats

    fig, (ax_p, ax_e, ax_d) = plt.subplots(
        3, 1, figsize=(12, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 2.2, 1.2]}, constrained_layout=True
    )
    fig.suptitle(
        f"{result.strategy} on {result.symbol}   return {_pct(s['total_return'])} (buy & hold "
        f"{_pct(s['buy_and_hold_return'])})   Sharpe {s['sharpe'] if s['sharpe'] is None else round(s['sharpe'], 2)}"
        f"   max drawdown {_pct(s['max_drawdown'])}   {s['trades']} trades",
        fontsize=11,
        fontweight="bold",
    )

    ax_p.plot(times, close, color="#444444", lw=0.9, label=f"{result.symbol} close")
    holding = result.position
    long_mask, short_mask = holding > 0, holding < 0
    lo, hi = float(np.min(close)), float(np.max(close))
    if long_mask.any():
        ax_p.fill_between(times, lo, hi, where=long_mask, color="#2e7d32", alpha=0.08, step="post", label="long")
    if short_mask.any():
        ax_p.fill_between(times, lo, hi, where=short_mask, color="#c62828", alpha=0.08, step="post", label="short")
    for side, marker, color in (("long", "^", "#2e7d32"), ("short", "v", "#c62828")):
        tr = [x for x in result.trades if x.side == side]
        if tr:
            ax_p.scatter(
                [times[x.entry_bar] for x in tr],
                [float(x.entry_price) for x in tr],
                marker=marker,
                s=46,
                color=color,
                edgecolor="white",
                linewidth=0.6,
                zorder=3,
                label=f"{side} entry",
            )
    exits = [x for x in result.trades if x.exit_bar is not None]
    if exits:
        ax_p.scatter(
            [times[x.exit_bar] for x in exits],
            [float(x.exit_price) for x in exits],
            marker="x",
            s=30,
            color="#1a1a1a",
            linewidth=1.1,
            zorder=3,
            label="exit",
        )
    ax_p.set_ylabel("price")
    if hi / lo > 10:
        ax_p.set_yscale("log")
    ax_p.legend(loc="upper left", fontsize=8, ncol=3, frameon=False)
    ax_p.grid(alpha=0.25)

    ax_e.plot(times, equity, color="#1565c0", lw=1.3, label="strategy equity")
    ax_e.plot(times, hold, color="#9e9e9e", lw=1.0, ls="--", label="buy & hold")
    ax_e.axhline(start, color="#757575", lw=0.6)
    ax_e.set_ylabel("equity")
    if np.all(equity > 0) and np.all(hold > 0) and max(equity.max(), hold.max()) / min(equity.min(), hold.min()) > 20:
        ax_e.set_yscale("log")
    ax_e.legend(loc="upper left", fontsize=8, frameon=False)
    ax_e.grid(alpha=0.25)

    ax_d.fill_between(times, drawdown * 100, 0, color="#c62828", alpha=0.35, step="post")
    ax_d.plot(times, drawdown * 100, color="#c62828", lw=0.7)
    worst = int(np.argmin(drawdown))
    ax_d.annotate(
        f"{drawdown[worst]:.1%}",
        (times[worst], drawdown[worst] * 100),
        fontsize=8,
        color="#c62828",
        xytext=(6, 6),
        textcoords="offset points",
        va="bottom",
    )
    ax_d.set_ylabel("drawdown %")
    ax_d.grid(alpha=0.25)
    ax_d.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax_d.xaxis.get_major_locator()))

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
