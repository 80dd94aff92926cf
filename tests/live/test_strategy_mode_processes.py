"""Real processes: `serve --bridge --bridge-mode strategy`, `execsim`, and `trading-mcp demo` through a real gateway;
the operator gauges read back from each process's /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bus.embedded import EmbeddedNats, free_port
from execsim.backtest.result import BacktestConfig
from execsim.backtest.runner import run_backtest
from gateway.settings import SECRET_FILE
from strategies.registry import build_strategy
from tests.conftest import Webhook, stream_count, wait_for
from tests.live.helpers import first_bars

EXE = str(Path(sys.executable).parent / "trading-mcp")
BARS = 60
PARAMS = {"window": 15, "entry_z": 1.5}
STRATEGIES = json.dumps({"AAPL": {"strategy": "mean_reversion", "params": PARAMS}})

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(base: str) -> Samples:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{base}/metrics")).text
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@contextlib.asynccontextmanager
async def service(args: list[str], env: dict[str, str], port: int) -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(EXE, *args, "--port", str(port), env=env)
    base = f"http://127.0.0.1:{port}"

    async def healthy() -> bool:
        assert proc.returncode is None, f"{args[0]} exited with {proc.returncode}"
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{base}/healthz", timeout=1)).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await wait_for(healthy, 30, f"{args[0]} to become healthy")
        yield base
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        EXE, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_the_demo_replays_real_bars_the_strategy_trades_them_and_the_gauges_show_account_and_risk(
    nats_server: EmbeddedNats, gateway: Webhook, tmp_path: Path
) -> None:
    (tmp_path / SECRET_FILE).write_text(gateway.secret + "\n")
    env = {**os.environ, "NATS_URL": nats_server.url, "TRADING_MCP_STRATEGIES": STRATEGIES}
    env["TRADING_MCP_DATA_DIR"] = str(tmp_path)  # execsim and the authority share the data dir's signing key
    serve = ["serve", "--data-dir", str(tmp_path), "--transport", "streamable-http", "--bridge"]
    serve += ["--bridge-mode", "strategy", "--strategy-commission", "0.001"]
    # the backtest enforces max_position only: the same limits here, every other paper default switched off
    no_limits = {k: None for k in ("max_order_notional", "max_gross_exposure", "max_open_orders")}
    no_limits |= {"max_orders_per_window": None, "daily_loss_limit": None, "max_drawdown": None}
    (tmp_path / "limits.json").write_text(json.dumps({**no_limits, "max_position": 1_000_000}))
    authority = ["authority", "--data-dir", str(tmp_path), "--risk-limits-file", str(tmp_path / "limits.json")]
    expected = run_backtest(
        build_strategy("mean_reversion", PARAMS),
        first_bars("AAPL", BARS),
        BacktestConfig(cash=Decimal(100_000), commission=Decimal("0.001")),
    )
    assert any(t.open for t in expected.trades) and any(not t.open for t in expected.trades)
    async with (
        service(["execsim", "--fee-bps", "10"], env, free_port()) as execsim,
        service(authority, env, free_port()),
        service(serve, env, free_port()) as mcp,
    ):
        code, out, err = await run(
            "demo", "--symbol", "AAPL", "--bars", str(BARS), "--speed", "500", "--url", gateway.url,
            "--data-dir", str(tmp_path), env=env,
        )  # fmt: skip
        assert code == 0, err
        assert f"done: {BARS} of {BARS} signals accepted" in out
        assert await stream_count(await _js(nats_server), "SIGNALS") == BARS

        async def equity_settled() -> bool:
            equity = value(await scrape(mcp), "portfolio_equity", account="paper")
            return equity is not None and abs(Decimal(str(equity)) - expected.final_equity) < Decimal("0.01")

        await wait_for(equity_settled, 20, "the live equity to reach the backtest's")
        samples = await scrape(mcp)
        closed = sum(t.pnl for t in expected.trades if not t.open)
        open_fees = sum(t.fees for t in expected.trades if t.open)
        assert value(samples, "portfolio_realized_pnl", account="paper") == float(closed - open_fees)
        assert value(samples, "mcp_active_positions", account="paper") == 1
        assert (
            value(samples, "portfolio_drawdown_ratio", account="paper")
            >= 1 - float(expected.final_equity) / 100_000 - 1e-9
        )
        assert (
            value(samples, "mcp_decisions_generated_total", strategy="mean_reversion", outcome="order")
            == len(expected.trades) * 2 - 1
        )
        assert value(samples, "risk_trading_state") == 0
        assert value(samples, "risk_max_drawdown_ratio") == 1.0  # no limit configured

        for action in (["set", "--set", "max_drawdown=0.4"], ["halt", "--reason", "test"]):
            code, _, err = await run("risk", *action, "--data-dir", str(tmp_path), env=env)
            assert code == 0, err

        async def halted() -> bool:
            s = await scrape(mcp)
            return value(s, "risk_trading_state") == 2 and value(s, "risk_max_drawdown_ratio") == 0.4

        await wait_for(halted, 10, "the operator's halt and limit on /metrics")
        execsim_samples = await scrape(execsim)
        assert value(execsim_samples, "exec_sim_open_orders") == 0
        assert value(execsim_samples, "exec_sim_fills_generated_total", side="buy") is not None


async def _js(nats_server: EmbeddedNats):  # type: ignore[no-untyped-def]
    import nats

    nc = await nats.connect(nats_server.url)
    return nc.jetstream()


async def test_serve_in_strategy_mode_with_an_unknown_strategy_exits_2_naming_the_choices(tmp_path: Path) -> None:
    env = {**os.environ, "TRADING_MCP_NATS_PORT": str(free_port())}
    env["TRADING_MCP_STRATEGIES"] = json.dumps({"AAPL": {"strategy": "astrology"}})
    serve = ["serve", "--data-dir", str(tmp_path), "--bridge", "--bridge-mode", "strategy"]
    code, _, err = await run(*serve, env=env)
    assert code == 2
    assert "strategy for AAPL: unknown strategy 'astrology'; choose one of momentum, mean_reversion, hybrid" in err


async def test_the_demo_without_a_secret_exits_2_and_says_to_start_up_first(tmp_path: Path) -> None:
    code, out, err = await run(
        "demo", "--data-dir", str(tmp_path), "--url", "http://127.0.0.1:9/webhook", env={**os.environ}
    )
    assert code == 2 and out == ""
    assert "run `trading-mcp up --mode strategy` first" in err
