"""Strategy mode, live: real daily bars through the real gateway give the backtest's trades."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bus.embedded import EmbeddedNats
from cli.demo import bar_payloads, replay
from decisions.strategy_mode import StrategyChoice
from observability import metrics
from tests.conftest import Webhook, wait_for
from tests.live.helpers import backtest_trades, bridge_done, live_trades, strategy_pipeline

BARS = 300
COMMISSION = Decimal("0.001")


def comparable(trades):  # type: ignore[no-untyped-def]
    return [
        (t.side, t.entry_time, t.exit_time, t.quantity, t.entry_price, t.exit_price, t.fees, t.pnl, t.open)
        for t in trades
    ]


@pytest.mark.parametrize(
    ("configured", "at_least"),
    [
        ({"AAPL": StrategyChoice(strategy="mean_reversion", params={"window": 15, "entry_z": 1.5})}, 10),
        ({}, 4),  # nothing configured: hybrid with its defaults (253 bars of warm-up)
    ],
    ids=["mean_reversion_configured", "hybrid_by_default"],
)
async def test_300_real_daily_bars_through_the_gateway_trade_exactly_as_the_backtest(
    nats_server: EmbeddedNats, gateway: Webhook, configured: dict[str, StrategyChoice], at_least: int
) -> None:
    choice = configured.get("AAPL", StrategyChoice())
    expected = backtest_trades("AAPL", BARS, choice, COMMISSION)
    assert len(expected) >= at_least  # the comparison is about something
    orders_before = metrics.mcp_decisions_generated_total.labels(choice.strategy, "order")._value.get()
    payloads = bar_payloads("AAPL", BARS)
    async with strategy_pipeline(nats_server.url, configured, COMMISSION) as live:
        answers = await replay(gateway.url, gateway.secret, payloads)
        assert [r.status_code for r in answers] == [202] * BARS
        await wait_for(lambda: bridge_done(live, BARS), 20, "the bridge to decide every bar and its orders to fill")
        got = live_trades(live, "AAPL", Decimal(payloads[-1]["close"]))
    assert comparable(got) == comparable(expected)
    intents = list(live.state.account.intents.values())
    assert {i.strategy for i in intents} == {choice.strategy}
    assert all(0 <= (i.confidence or 0) <= 1 and "summary" in i.rationale for i in intents)
    orders_after = metrics.mcp_decisions_generated_total.labels(choice.strategy, "order")._value.get()
    assert orders_after - orders_before == len(intents)


async def test_after_a_restart_halfway_the_bridge_rebuilds_bar_history_and_still_trades_as_the_backtest(
    nats_server: EmbeddedNats, gateway: Webhook
) -> None:
    choice = StrategyChoice(strategy="mean_reversion", params={"window": 15, "entry_z": 1.5})
    expected = backtest_trades("AAPL", BARS, choice, COMMISSION)
    payloads = bar_payloads("AAPL", BARS)
    half = 150
    async with strategy_pipeline(nats_server.url, {"AAPL": choice}, COMMISSION) as live:
        await replay(gateway.url, gateway.secret, payloads[:half])
        await wait_for(lambda: bridge_done(live, half), 20, "the first half decided")
        fills_before = len(live.state.portfolio.fills)
    assert fills_before > 0
    async with strategy_pipeline(nats_server.url, {"AAPL": choice}, COMMISSION) as live:
        answers = await replay(gateway.url, gateway.secret, payloads[half:])
        assert [r.status_code for r in answers] == [202] * (BARS - half)
        await wait_for(lambda: bridge_done(live, BARS), 20, "the second half decided")
        got = live_trades(live, "AAPL", Decimal(payloads[-1]["close"]))
    assert comparable(got) == comparable(expected)
