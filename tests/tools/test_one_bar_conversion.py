"""One conversion from a signal to a bar: what the MCP tools show is exactly what the simulator, the authority,
the bridge and the strategies use, for every mix of open / high / low / close a sender may send."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from mcp_server.bars import bar_of
from schemas.market import Bar
from schemas.signals import NormalizedSignal

PRICES = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10_000), places=2)


@given(
    price=PRICES, open_=st.none() | PRICES, high=st.none() | PRICES, low=st.none() | PRICES, close=st.none() | PRICES
)
def test_the_tools_bar_is_the_engines_bar_for_any_ohlc_a_sender_sends(price, open_, high, low, close) -> None:
    signal = NormalizedSignal(
        signal_id="s1",
        source="t",
        symbol="AAPL",
        price=price,
        open=open_,
        high=high,
        low=low,
        close=close,
        received_at=datetime(2026, 1, 2, tzinfo=UTC),
        correlation_id="c",
    )
    try:
        engine = Bar.from_signal(signal)
    except ValueError:
        return  # the sender's own high/low contradict open/close: refused the same way everywhere
    shown = bar_of(signal)
    assert (shown.open, shown.high, shown.low, shown.close, shown.time) == (
        engine.open,
        engine.high,
        engine.low,
        engine.close,
        engine.ts,
    )
    assert shown.low <= min(shown.open, shown.close) and max(shown.open, shown.close) <= shown.high
