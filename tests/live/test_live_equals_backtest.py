"""Strategy mode, live: real daily bars through the real gateway give the backtest's trades."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bus.embedded import EmbeddedNats
from bus.snapshot import get_parts, open_bucket
from cli.demo import bar_payloads, replay
from decisions.strategy_mode import SNAPSHOT_BUCKET, StrategyChoice
from observability import metrics
from schemas.common import DEFAULT_ACCOUNT
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


@pytest.mark.parametrize("from_snapshot", [False, True], ids=["replaying_every_signal", "from_the_strategy_snapshot"])
async def test_after_a_restart_halfway_the_bridge_rebuilds_bar_history_and_still_trades_as_the_backtest(
    nats_server: EmbeddedNats, gateway: Webhook, from_snapshot: bool
) -> None:
    """The second start warms the strategy up either from every acked signal (no snapshot stored) or from the
    strategy snapshot the first bridge stored at its ack floor (and the signals after it: none here); either way the
    trades are the backtest's."""
    choice = StrategyChoice(strategy="mean_reversion", params={"window": 15, "entry_z": 1.5})
    expected = backtest_trades("AAPL", BARS, choice, COMMISSION)
    payloads = bar_payloads("AAPL", BARS)
    half = 150
    every = 0.2 if from_snapshot else 0.0
    async with strategy_pipeline(nats_server.url, {"AAPL": choice}, COMMISSION, snapshot_every=every) as live:
        await replay(gateway.url, gateway.secret, payloads[:half])
        await wait_for(lambda: bridge_done(live, half), 20, "the first half decided")
        fills_before = len(live.state.portfolio.fills)
        if from_snapshot:

            async def stored_at_the_floor() -> bool:
                return await snapshot_seq(live.state.js) == half

            await wait_for(stored_at_the_floor, 10, "the strategy snapshot at the ack floor")
    assert fills_before > 0
    async with strategy_pipeline(nats_server.url, {"AAPL": choice}, COMMISSION, snapshot_every=every) as live:
        await wait_for(lambda: live.bridge.warmed is not None, 20, "the second bridge warmed up")
        warmed = live.bridge.warmed
        assert warmed is not None
        assert (warmed.restored_from, warmed.replayed) == ((half, 0) if from_snapshot else (0, half))
        answers = await replay(gateway.url, gateway.secret, payloads[half:])
        assert [r.status_code for r in answers] == [202] * (BARS - half)
        await wait_for(lambda: bridge_done(live, BARS), 20, "the second half decided")
        got = live_trades(live, "AAPL", Decimal(payloads[-1]["close"]))
    assert comparable(got) == comparable(expected)


async def snapshot_seq(js) -> int | None:  # type: ignore[no-untyped-def]
    """The signal sequence of the stored strategy snapshot of the default account, None when there is none."""
    kv = await open_bucket(js, bucket=SNAPSHOT_BUCKET)
    stored = None if kv is None else await get_parts(kv, DEFAULT_ACCOUNT)
    return None if stored is None else int(stored[0]["seq"])
