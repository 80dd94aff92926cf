"""The strategies, portfolio and risk tools through the in-memory MCP client, error paths included."""

from __future__ import annotations

import json
from decimal import Decimal

from mcp import Client

from bus.embedded import EmbeddedNats
from mcp_server.server import build_server
from mcp_server.tooling import ToolOptions
from tests.conftest import wait_for
from tests.mcp.helpers import add_fill, add_signal, live_account, offline_state, operator_sets, publish_signal
from tools.clock import TestClock
from tools.risk import RiskGate, RiskLimits, TradingState

EVERY = ["all"]  # strategies and order_check are opt-in toolsets


def _text(result) -> str:  # type: ignore[no-untyped-def]
    assert len(result.content) == 1 and result.content[0].type == "text"
    return result.content[0].text


def _zigzag(state, n: int, symbol: str = "AAPL") -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        add_signal(state, i, symbol=symbol, price=str(100 + (i % 7)))


async def test_list_strategies_gives_each_strategy_with_variants_and_typed_parameters_from_its_model() -> None:
    async with Client(build_server(offline_state(), toolsets_enabled=EVERY)) as client:
        result = await client.call_tool("list_strategies", {})
        resource = await client.read_resource("strategies://catalog")
    by_name = {s["name"]: s for s in result.structured_content["strategies"]}
    assert by_name.keys() == {"momentum", "mean_reversion", "hybrid"}
    assert by_name["momentum"]["variants"] == ["roc", "ma_cross"]
    lookback = next(p for p in by_name["momentum"]["parameters"] if p["name"] == "lookback")
    assert (lookback["type"], lookback["default"], lookback["constraints"]) == ("int", 252, {"ge": 1, "le": 10_000})
    assert "lookback return" in lookback["description"]
    assert any(p["name"] == "momentum.variant" for p in by_name["hybrid"]["parameters"]), "nested params, dotted"
    assert by_name["mean_reversion"]["warmup_bars"] == 20
    assert "mean_reversion" in _text(result) and "window=20" in _text(result)
    assert json.loads(resource.contents[0].text) == result.structured_content


async def test_evaluate_strategy_returns_the_decision_with_its_rationale_on_the_symbols_history() -> None:
    state = offline_state()
    _zigzag(state, 30)
    async with Client(build_server(state, toolsets_enabled=EVERY)) as client:
        result = await client.call_tool("evaluate_strategy", {"symbol": "aapl", "strategy": "mean_reversion"})
    assert not result.is_error
    body = result.structured_content
    assert (body["symbol"], body["bars_used"], body["bars_needed"]) == ("AAPL", 30, 20)
    decision = body["decision"]
    assert decision["status"] == "ready" and decision["strategy"] == "mean_reversion"
    assert decision["rationale"]["window"] == 20 and decision["rationale"]["zscore"] < 0
    assert decision["target"] == 1.0, "the last close sits low in its window: mean reversion wants to be long"
    assert "mean_reversion on AAPL" in _text(result) and "confidence" in _text(result)


async def test_evaluate_strategy_with_short_history_says_insufficient_data_and_how_much_is_missing() -> None:
    state = offline_state()
    _zigzag(state, 30)
    async with Client(build_server(state, toolsets_enabled=EVERY)) as client:
        result = await client.call_tool("evaluate_strategy", {"symbol": "AAPL", "strategy": "momentum"})
    assert not result.is_error
    decision = result.structured_content["decision"]
    assert (decision["status"], decision["side"], decision["target"]) == ("insufficient_data", "hold", 0.0)
    assert result.structured_content["bars_needed"] == 253
    assert "insufficient data — 30 bar(s) of history, 253 needed" in _text(result)


async def test_evaluate_strategy_with_bad_params_or_no_data_is_a_tool_error_naming_the_problem() -> None:
    state = offline_state()
    _zigzag(state, 5)
    async with Client(build_server(state, toolsets_enabled=EVERY)) as client:
        bad_value = await client.call_tool(
            "evaluate_strategy", {"symbol": "AAPL", "strategy": "momentum", "params": {"lookback": "soon"}}
        )
        unknown = await client.call_tool(
            "evaluate_strategy", {"symbol": "AAPL", "strategy": "mean_reversion", "params": {"windw": 5}}
        )
        crossed = await client.call_tool(
            "evaluate_strategy",
            {"symbol": "AAPL", "strategy": "mean_reversion", "params": {"entry_z": 1, "exit_z": 2}},
        )
        wrong_name = await client.call_tool("evaluate_strategy", {"symbol": "AAPL", "strategy": "astrology"})
        no_data = await client.call_tool("evaluate_strategy", {"symbol": "TSLA", "strategy": "hybrid"})
    assert _text(bad_value).startswith("invalid_arguments: params: ") and "lookback" in _text(bad_value)
    assert "windw" in _text(unknown) and _text(unknown).startswith("invalid_arguments")
    assert "exit_z (2.0) must be smaller than entry_z (1.0)" in _text(crossed)
    assert _text(wrong_name).startswith("invalid_arguments: evaluate_strategy: strategy:")
    assert _text(no_data).startswith("no_data: no signals for TSLA yet")


async def test_run_backtest_on_bundled_real_data_reports_progress_stats_and_a_bounded_trade_list() -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with Client(build_server(offline_state(), toolsets_enabled=EVERY)) as client:
        result = await client.call_tool(
            "run_backtest",
            {"symbol": "bundled:AAPL", "strategy": "momentum", "commission": "0.001", "cash": "50000", "max_trades": 5},
            progress_callback=on_progress,
        )
    assert not result.is_error, result.content[0]
    body = result.structured_content
    assert (body["symbol"], body["data"], body["bars"]) == ("AAPL", "bundled", 3270)
    assert body["first_bar"].startswith("2000-03-01") and body["last_bar"].startswith("2013-03-01")
    assert Decimal(body["cash"]) == 50_000 and Decimal(body["commission"]) == Decimal("0.001")
    assert body["stats"]["bars"] == 3270 and body["stats"]["fees"] > 0
    assert body["trades_total"] > 5 and len(body["trades"]) == 5
    assert abs(float(body["final_equity"]) - body["stats"]["final_equity"]) < 0.01
    assert progress[0] == (0, 1, "loading bundled bars for AAPL")
    assert progress[-1] == (3270, 3270, "3270 of 3270 bars")
    text, *links = result.content
    assert "momentum on AAPL (bundled, 3270 bars 2000-03-01 to 2013-03-01)" in text.text
    assert [link.type for link in links] == ["resource_link"] * 3, "trades, equity curve and plot as links"


async def test_run_backtest_on_stored_signals_and_its_error_paths() -> None:
    state = offline_state()
    _zigzag(state, 30)
    add_signal(state, 100, symbol="MSFT", price="50")
    async with Client(build_server(state, toolsets_enabled=EVERY)) as client:
        stored = await client.call_tool("run_backtest", {"symbol": "AAPL", "strategy": "mean_reversion"})
        one_bar = await client.call_tool("run_backtest", {"symbol": "MSFT", "strategy": "mean_reversion"})
        unknown = await client.call_tool("run_backtest", {"symbol": "ZZZ", "strategy": "momentum", "data": "bundled"})
        pricey = await client.call_tool("run_backtest", {"symbol": "AAPL", "strategy": "momentum", "commission": "0.5"})
    assert not stored.is_error and stored.structured_content["bars"] == 30
    assert stored.structured_content["data"] == "signals" and stored.structured_content["trades_total"] >= 1
    assert _text(one_bar).startswith("no_data: 1 signal(s) stored for MSFT; a backtest needs at least 2 bars")
    assert _text(unknown).startswith("no_data: no bundled data for 'ZZZ'; bundled: AAPL")
    assert _text(pricey).startswith("invalid_arguments: run_backtest: commission: Input should be less than 0.1")


async def test_get_market_snapshot_carries_indicators_once_twenty_bars_are_stored() -> None:
    state = offline_state()
    _zigzag(state, 19)
    async with Client(build_server(state, toolsets_enabled=EVERY)) as client:
        early = await client.call_tool("get_market_snapshot", {"symbol": "AAPL", "bars": 2})
        add_signal(state, 19, price="101")
        ready = await client.call_tool("get_market_snapshot", {"symbol": "AAPL", "bars": 2})
    assert early.structured_content["indicators"]["sma_20"] is None
    assert "Indicators need 20 bars; 19 stored so far." in _text(early)
    closes = [100 + (i % 7) for i in range(19)] + [101]
    ind = ready.structured_content["indicators"]
    assert ind["bars_seen"] == 20 and ind["sma_20"] == round(sum(closes) / 20, 6)
    assert ind["bollinger_lower"] < ind["sma_20"] < ind["bollinger_upper"] and 0 <= ind["rsi_14"] <= 100
    assert len(ready.structured_content["bars"]) == 2, "indicators read the whole history, bars stays bounded"
    assert "Indicators over 20 bars: SMA20" in _text(ready)


async def test_get_positions_reports_cash_equity_pnl_fees_and_exposure_with_money_in_cents() -> None:
    state = offline_state()
    add_fill(state, 1, "buy", "10", "100")
    add_fill(state, 2, "sell", "5", "50", symbol="MSFT")
    state.portfolio.mark("AAPL", Decimal(110))
    async with Client(build_server(state, toolsets_enabled=EVERY)) as client:
        result = await client.call_tool("get_positions", {})
    account = result.structured_content["account"]
    assert Decimal(account["cash"]) == Decimal(100_000) - 1000 + 250 - Decimal("0.20")
    assert Decimal(account["equity"]) == Decimal(account["cash"]) + 1100 - 250
    assert Decimal(account["unrealized_pnl"]) == 100 and Decimal(account["fees_paid"]) == Decimal("0.20")
    assert (Decimal(account["gross_exposure"]), Decimal(account["net_exposure"])) == (1350, 850)
    assert {p["symbol"] for p in result.structured_content["positions"]} == {"AAPL", "MSFT"}
    assert "Equity 100099.80 = cash 99249.80 + market value 850.00 (started with 100000.00)." in _text(result)
    assert "AAPL long 10 @ 100 avg, mark 110, unrealized PnL 100.00, realized PnL 0.00, fees 0.10" in _text(result)


def _gated(limits: RiskLimits) -> tuple:  # type: ignore[type-arg]
    state = offline_state()
    clock = TestClock()
    state.account.gate = RiskGate(limits, clock=clock)
    return state, clock


async def test_get_risk_status_and_the_risk_resources_show_the_limits_the_gate_enforces() -> None:
    state, _ = _gated(
        RiskLimits(max_position=Decimal(50), max_order_notional=Decimal(5000), max_drawdown=Decimal("0.2"))
    )
    async with Client(build_server(state, toolsets_enabled=EVERY)) as client:
        result = await client.call_tool("get_risk_status", {})
        limits = json.loads((await client.read_resource("risk://limits")).contents[0].text)
        status = json.loads((await client.read_resource("risk://status")).contents[0].text)
    assert result.structured_content["limits"]["max_position"] == "50"
    assert result.structured_content["limits"]["max_order_notional"] == "5000"
    assert limits["limits"] == result.structured_content["limits"] and limits["trading_state"] == "ACTIVE"
    assert status["trading_state"] == "ACTIVE"
    assert "max position 50; max order quantity off; max order notional 5000.00;" in _text(result)
    assert "max drawdown 20.0 % (then HALTED)" in _text(result) and "Decimal(" not in _text(result)


async def test_get_risk_status_reports_state_drawdown_daily_pnl_and_headroom_per_limit() -> None:
    state, _ = _gated(RiskLimits(max_position=Decimal(20), daily_loss_limit=Decimal(500), max_drawdown=Decimal("0.5")))
    add_fill(state, 1, "buy", "10", "100")
    state.gate.observe_equity(state.portfolio.equity())
    state.portfolio.mark("AAPL", Decimal(70))
    state.gate.observe_equity(state.portfolio.equity())
    state.gate.kill("operator test")
    async with Client(build_server(state, toolsets_enabled=EVERY)) as client:
        result = await client.call_tool("get_risk_status", {})
    body = result.structured_content
    assert (body["trading_state"], body["state_reason"]) == ("HALTED", "operator test")
    assert Decimal(body["daily_pnl"]) == -300
    assert body["drawdown"] == round(300 / float(Decimal("99999.90")), 6)
    rows = {h["limit"]: h for h in body["headroom"]}
    assert (Decimal(rows["max_position:AAPL"]["used"]), Decimal(rows["max_position:AAPL"]["headroom"])) == (10, 10)
    assert (Decimal(rows["daily_loss_limit"]["used"]), Decimal(rows["daily_loss_limit"]["headroom"])) == (300, 200)
    assert rows["daily_loss_limit"]["used_fraction"] == 0.6
    assert "Trading state HALTED (operator test)" in _text(
        result
    ) and "daily_loss_limit: 300.00 of 500.00 used (60.0 %), 200.00 left" in _text(result)
    assert "Equity 99699.90, drawdown 0.3 %, daily PnL -300.00" in _text(result)


async def test_check_order_is_a_dry_run_of_the_gate_that_never_counts_toward_the_order_rate(
    nats_server: EmbeddedNats,
) -> None:
    limits = RiskLimits(max_position=Decimal(100), max_orders_per_window=1)
    async with (
        live_account(nats_server.url, limits) as acct,
        Client(build_server(acct.state, toolsets_enabled=EVERY)) as client,
    ):
        await publish_signal(acct.state, 1, price="200")
        await wait_for(lambda: acct.state.account.last_price("AAPL") == 200, 10, "the authority's mark")
        order = {"symbol": "AAPL", "side": "buy", "quantity": "10"}
        checks = [await client.call_tool("check_order", order) for _ in range(3)]
        too_big = await client.call_tool("check_order", {**order, "quantity": "101"})
        bad = await client.call_tool("check_order", {**order, "order_type": "stop_limit", "stop_price": "190"})
        no_price = await client.call_tool("check_order", {**order, "symbol": "TSLA"})
        state = acct.state
        assert all(c.structured_content["approved"] for c in checks), "three dry runs pass a limit of one a minute"
        assert acct.authority.account.orders_in_window(acct.clock.now()) == 0
        assert state.orders == {} and acct.authority.account.orders == {}, "a dry run places nothing"
    assert checks[0].structured_content["price_used"] == "200"
    assert (checks[0].structured_content["position_now"], checks[0].structured_content["position_after"]) == ("0", "10")
    assert "would be APPROVED" in _text(checks[0]) and "nothing was placed" in _text(checks[0])
    denied = too_big.structured_content
    assert (denied["approved"], denied["reason_code"]) == (False, "max_position")
    assert "would be DENIED (max_position:" in _text(too_big) and not too_big.is_error
    assert _text(bad) == "invalid_arguments: a stop_limit order needs limit_price. Fix the order and call again."
    assert _text(no_price).startswith("no_price: no price is known for TSLA yet")


async def test_check_order_sees_the_trading_state(nats_server: EmbeddedNats) -> None:
    options = ToolOptions(confirmation="auto")
    async with (
        live_account(nats_server.url, RiskLimits()) as acct,
        Client(build_server(acct.state, toolsets_enabled=EVERY, options=options)) as c,
    ):
        await publish_signal(acct.state, 1, price="200", engine=acct.engine)
        await c.call_tool("place_order", {"symbol": "AAPL", "side": "buy", "quantity": "10"})
        await wait_for(lambda: acct.state.portfolio.quantity("AAPL") == 10, 10, "the fill")
        await operator_sets(acct, state=TradingState.REDUCING, reason="test")
        adding = await c.call_tool("check_order", {"symbol": "AAPL", "side": "buy", "quantity": "1"})
        reducing = await c.call_tool("check_order", {"symbol": "AAPL", "side": "sell", "quantity": "4"})
        flipping = await c.call_tool("check_order", {"symbol": "AAPL", "side": "sell", "quantity": "11"})
    assert adding.structured_content["reason_code"] == "reducing_only"
    assert (
        reducing.structured_content["approved"] is True and reducing.structured_content["trading_state"] == "REDUCING"
    )
    assert flipping.structured_content["reason_code"] == "reducing_only", "selling 11 of 10 would open a short"
