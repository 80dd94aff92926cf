"""Two accounts, one feed, real processes: `authority`, `execsim`, `serve --bridge --bridge-mode strategy` and a
`gateway` whose one source routes every bar to both `momo` (momentum) and `meanrev` (mean reversion); the bars go
in through `trading-mcp demo`. Each account ends where the backtester ends for its own strategy, and an MCP
client of `serve --account momo` (stdio) sees momo's account and nothing of meanrev's, and the other way round."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from mcp import Client, StdioServerParameters

from bus.embedded import EmbeddedNats, free_port
from bus.jetstream import connect
from bus.journal import JournalFollower
from execsim.backtest.result import BacktestConfig, BacktestResult
from execsim.backtest.runner import run_backtest
from gateway import signing
from schemas.account import AccountEvent
from schemas.signals import NormalizedSignal
from strategies.registry import build_strategy
from tests.conftest import wait_for
from tests.live.helpers import first_bars
from tools.account import Account

EXE = str(Path(sys.executable).parent / "trading-mcp")
SYMBOL = "AAPL"
BARS = 60
COMMISSION = Decimal("0.001")
STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "momo": ("momentum", {"variant": "ma_cross", "fast": 5, "slow": 20}),
    "meanrev": ("mean_reversion", {"window": 15, "entry_z": 1.5}),  # as in test_strategy_mode_processes
}
ACCOUNTS = list(STRATEGIES)


def accounts_toml() -> str:
    blocks = []
    for account, (strategy, params) in STRATEGIES.items():
        inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in params.items())
        blocks.append(
            f'[[accounts]]\nid = "{account}"\nmode = "strategy"\n'
            f'strategies = {{ {SYMBOL} = {{ strategy = "{strategy}", params = {{ {inline} }} }} }}\n'
        )
    return "\n".join(blocks)


def fold_into(account: Account, seq: int, event: AccountEvent) -> None:
    account.apply(event, seq)


def backtest(account: str) -> BacktestResult:
    strategy, params = STRATEGIES[account]
    config = BacktestConfig(cash=Decimal(100_000), commission=COMMISSION)
    return run_backtest(build_strategy(strategy, params), first_bars(SYMBOL, BARS), config)


@contextlib.asynccontextmanager
async def service(args: list[str], env: dict[str, str], log: Path) -> AsyncIterator[str]:
    """A `trading-mcp` process on a free port, once its /healthz answers; SIGTERM at the end."""
    port = free_port()
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            EXE, *args, "--port", str(port), env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"

    async def healthy() -> bool:
        assert proc.returncode is None, f"{args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{base}/healthz", timeout=1)).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await wait_for(healthy, 60, f"{args[0]} to become healthy")
        yield base
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        EXE, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return int(proc.returncode or 0), out.decode(), err.decode()


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result
    return dict(result.structured_content)


async def test_two_accounts_on_one_feed_each_trade_their_own_strategy_and_each_mcp_client_sees_only_its_own(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "accounts.toml").write_text(accounts_toml())
    secret = signing.new_secret()
    (data / "sources.toml").write_text(
        f'[[sources]]\nname = "bars"\nsecrets = ["{secret}"]\naccounts = {json.dumps(ACCOUNTS)}\n'
    )
    # the backtest enforces no limit but max_position: the same here, every other paper default switched off
    no_limits: dict[str, object] = {k: None for k in ("max_order_notional", "max_gross_exposure", "max_open_orders")}
    no_limits |= {"max_orders_per_window": None, "daily_loss_limit": None, "max_drawdown": None}
    (tmp_path / "limits.json").write_text(json.dumps({**no_limits, "max_position": 1_000_000}))

    expected = {account: backtest(account) for account in ACCOUNTS}
    for result in expected.values():  # each strategy opens and closes trades on these bars
        assert any(t.open for t in result.trades) and any(not t.open for t in result.trades)
    assert expected["momo"].final_equity != expected["meanrev"].final_equity

    env = {**os.environ, "NATS_URL": nats_server.url, "TRADING_MCP_DATA_DIR": str(data)}
    env.pop("TRADING_MCP_STRATEGIES", None)
    env.pop("TRADING_MCP_ACCOUNTS_FILE", None)
    dd = ["--data-dir", str(data)]
    authority = ["authority", *dd, "--risk-limits-file", str(tmp_path / "limits.json")]
    serve = ["serve", *dd, "--account", "momo", "--transport", "streamable-http", "--bridge"]
    serve += ["--bridge-mode", "strategy", "--strategy-commission", str(COMMISSION)]

    nc = await connect(nats_server.url, "two-accounts-test")
    js = nc.jetstream()
    folds = {account: Account(account_id=account) for account in ACCOUNTS}
    followers = []
    try:
        async with (
            service(["execsim", "--fee-bps", "10"], env, tmp_path / "execsim.log"),
            service(authority, env, tmp_path / "authority.log"),
            service(serve, env, tmp_path / "serve.log") as mcp_http,
            service(["gateway", *dd], env, tmp_path / "gateway.log") as gateway,
        ):
            for account, fold in folds.items():
                follower = JournalFollower(js, functools.partial(fold_into, fold), account)
                await follower.start()
                followers.append(follower)
            # the authority pool member owns both accounts before the first bar
            await wait_for(lambda: all(f.owner is not None for f in folds.values()), 60, "an owner for each account")

            code, out, err = await run(
                "demo", "--symbol", SYMBOL, "--bars", str(BARS), "--speed", "500", "--url", f"{gateway}/webhook/bars",
                "--secret", secret, *dd, env=env,
            )  # fmt: skip
            assert code == 0, out + err
            assert f"done: {BARS} of {BARS} signals accepted" in out, out

            # the one stored signal per bar feeds both accounts
            info = await js.stream_info("SIGNALS")
            assert info.state.messages == BARS
            stored = [
                NormalizedSignal.model_validate_json((await js.get_msg("SIGNALS", seq)).data or b"")
                for seq in range(info.state.first_seq, info.state.last_seq + 1)
            ]
            assert [s.source for s in stored] == ["bars"] * BARS
            assert [list(s.accounts) for s in stored] == [ACCOUNTS] * BARS

            def settled() -> bool:
                return all(
                    not fold.working and abs(fold.portfolio.equity() - expected[account].final_equity) < Decimal("0.01")
                    for account, fold in folds.items()
                )

            try:
                await wait_for(settled, 90, "each account's equity to reach its own backtest's")
            except AssertionError:
                got = {a: (f.portfolio.equity(), len(f.portfolio.fills), len(f.orders)) for a, f in folds.items()}
                want = {a: (r.final_equity, len(r.trades)) for a, r in expected.items()}
                logs = {n: (tmp_path / f"{n}.log").read_text()[-4000:] for n in ("serve", "authority", "execsim")}
                raise AssertionError(
                    f"live (equity, fills, orders) {got} vs backtest (equity, trades) {want}; logs: {logs}"
                ) from None

            momo, meanrev = folds["momo"], folds["meanrev"]
            for account, fold in folds.items():
                trades = expected[account].trades
                assert not fold.denials, fold.denials
                assert fold.portfolio.quantity(SYMBOL) == sum(
                    t.quantity * (1 if t.side == "long" else -1) for t in trades if t.open
                )
            assert momo.portfolio.equity() != meanrev.portfolio.equity()
            fills_of = {
                a: {(f.client_order_id, f.side, f.quantity, f.price) for f in fold.portfolio.fills}
                for a, fold in folds.items()
            }
            assert fills_of["momo"] != fills_of["meanrev"]

            # the bridge's server exports each account's gauges under its own label (set within 0.2 s of its fold)
            async def gauges_show_the_folds() -> bool:
                samples = await scrape(mcp_http)
                equities = {a: samples.get(("portfolio_equity", frozenset({("account", a)}))) for a in folds}
                return all(
                    e is not None and abs(Decimal(str(e)) - folds[a].portfolio.equity()) < Decimal("0.01")
                    for a, e in equities.items()
                )

            await wait_for(gauges_show_the_folds, 5, "each account's equity gauge to show its fold")

            # MCP over stdio, one server per account: each sees its own account and nothing of the other's
            views = {}
            for account, other in (("momo", "meanrev"), ("meanrev", "momo")):
                their_orders = sorted(set(folds[other].orders) - set(folds[account].orders))
                views[account] = await mcp_view(account, data, env, their_orders)
        for account, other in (("momo", "meanrev"), ("meanrev", "momo")):
            view, fold, theirs = views[account], folds[account], folds[other]
            for tool, schema in view["schemas"].items():
                assert "account" not in schema.get("properties", {}), f"{tool} takes an account"
                assert "account_id" not in schema.get("properties", {}), f"{tool} takes an account"
            positions = view["get_positions"]
            assert abs(Decimal(positions["account"]["equity"]) - fold.portfolio.equity()) < Decimal("0.01")
            assert Decimal(positions["account"]["equity"]) != theirs.portfolio.equity()
            [position] = positions["positions"]
            assert Decimal(position["quantity"]) == fold.portfolio.quantity(SYMBOL)
            orders = view["list_orders"]["orders"]
            assert {o["client_order_id"] for o in orders} == set(fold.orders)
            assert {(o["client_order_id"], o["side"], Decimal(o["quantity"])) for o in orders} == {
                (v.client_order_id, v.side, v.quantity) for v in fold.orders.values()
            }
            fills = view["list_fills"]["fills"]
            assert {
                (f["client_order_id"], f["side"], Decimal(f["quantity"]), Decimal(f["price"])) for f in fills
            } == fills_of[account]
            assert len(view["list_signals"]["signals"]) == BARS  # both are fed every bar
            # their orders: the ids only they have appear nowhere in this client's answers, and get_order refuses them
            only_theirs = set(theirs.orders) - set(fold.orders)
            assert only_theirs, "the strategies never traded on different bars"
            text = view["text"]
            for coid in only_theirs:
                assert coid not in text
            assert set(view["get_order_theirs"]) == only_theirs
            for coid, error in view["get_order_theirs"].items():
                assert error is True, f"{account}'s client read {other}'s order {coid}"
    finally:
        for follower in followers:
            await follower.stop()
        await nc.close()


async def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{base}/metrics", timeout=10)).text
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


async def mcp_view(account: str, data: Path, env: dict[str, str], their_orders: list[str]) -> dict[str, Any]:
    """What an MCP client of `trading-mcp serve --account <account>` (stdio) gets from the read tools, and
    whether get_order refuses each of `their_orders` (client order ids only the other account has)."""
    params = StdioServerParameters(
        command=EXE, args=["serve", "--transport", "stdio", "--data-dir", str(data), "--account", account], env=env
    )
    view: dict[str, Any] = {}
    async with Client(params, read_timeout_seconds=60) as client:
        tools = (await client.list_tools()).tools
        view["schemas"] = {t.name: t.input_schema for t in tools}
        assert {"get_positions", "list_orders", "list_fills", "list_signals", "get_order"} <= view["schemas"].keys()
        view["get_positions"] = structured(await client.call_tool("get_positions", {}))
        view["list_orders"] = structured(await client.call_tool("list_orders", {"status": "all", "limit": 500}))
        view["list_fills"] = structured(await client.call_tool("list_fills", {"limit": 500}))
        view["list_signals"] = structured(await client.call_tool("list_signals", {"limit": 500}))
        view["text"] = json.dumps([view[k] for k in ("get_positions", "list_orders", "list_fills", "list_signals")])
        view["get_order_theirs"] = {}
        for coid in their_orders:
            view["get_order_theirs"][coid] = bool(
                (await client.call_tool("get_order", {"client_order_id": coid})).is_error
            )
    return view
