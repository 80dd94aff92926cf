"""Every risk rule at its edge (just under, at, just over), the trading states and limit changes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tools.clock import TestClock
from tools.risk import LimitChangeRefused, RiskGate, RiskLimits, TradingState

D = Decimal


def gate(**limits: Any) -> tuple[RiskGate, TestClock]:
    clock = TestClock()
    return RiskGate(RiskLimits(**limits), clock), clock


def check(g: RiskGate, **kw: Any) -> tuple[bool, str]:
    args: dict[str, Any] = {
        "symbol": "AAPL",
        "side": "buy",
        "quantity": D(1),
        "projected_position": D(0),
        "price": D(100),
    }
    args.update(kw)
    v = g.check(**args)
    return v.approved, v.reason_code


EDGES = [
    # (limits, order, code) — the order is checked with quantity just under, at and just over the edge
    ({"max_order_quantity": D(10)}, {"quantity": D(10)}, "max_order_quantity"),
    (
        {"max_order_quantity": D(100), "max_order_quantity_per_symbol": {"AAPL": D(10)}},
        {"quantity": D(10)},
        "max_order_quantity",
    ),
    ({"max_order_notional": D(1000)}, {"quantity": D(10), "price": D(100)}, "max_order_notional"),
    ({"max_order_notional_per_symbol": {"AAPL": D(1000)}}, {"quantity": D(10), "price": D(100)}, "max_order_notional"),
    ({"max_position": D(50)}, {"quantity": D(10), "projected_position": D(40)}, "max_position"),
    ({"max_position_per_symbol": {"AAPL": D(50)}}, {"quantity": D(10), "projected_position": D(40)}, "max_position"),
    (
        {"max_gross_exposure": D(5000)},
        {"quantity": D(10), "price": D(100), "gross_exposure": D(4000)},
        "max_gross_exposure",
    ),
]


@pytest.mark.parametrize(("limits", "order", "code"), EDGES)
@pytest.mark.parametrize(("nudge", "approved"), [(D("-0.01"), True), (D(0), True), (D("0.01"), False)])
def test_each_limit_allows_reaching_it_and_denies_going_beyond(
    limits: dict[str, Any], order: dict[str, Any], code: str, nudge: Decimal, approved: bool
) -> None:
    g, _ = gate(**limits)
    order = {**order, "quantity": order["quantity"] + nudge}
    assert check(g, **order) == ((True, "approved") if approved else (False, code))


def test_a_limit_order_notional_is_priced_at_its_limit_not_at_the_last_price() -> None:
    g, _ = gate(max_order_notional=D(1000))
    assert check(g, quantity=D(10), price=D(90), order_type="limit", limit_price=D("100.01")) == (
        False,
        "max_order_notional",
    )
    assert check(g, quantity=D(10), price=D(110), order_type="limit", limit_price=D(100)) == (True, "approved")


def test_orders_that_reduce_a_position_pass_the_position_and_exposure_limits() -> None:
    g, _ = gate(max_position=D(10), max_gross_exposure=D(500))
    assert check(g, side="sell", quantity=D(5), projected_position=D(20), gross_exposure=D(2000)) == (
        True,
        "approved",
    )


@pytest.mark.parametrize(("open_orders", "approved"), [(3, True), (4, True), (5, False)])
def test_max_open_orders_counts_the_new_order(open_orders: int, approved: bool) -> None:
    g, _ = gate(max_open_orders=5)
    assert check(g, open_orders=open_orders)[0] is approved


def test_the_order_rate_allows_n_orders_per_window_on_the_injected_clock() -> None:
    g, clock = gate(max_orders_per_window=3, order_window_seconds=60)
    assert [check(g)[0] for _ in range(3)] == [True, True, True]
    assert check(g) == (False, "order_rate")
    clock.advance(59.999)
    assert check(g) == (False, "order_rate")
    clock.advance(0.001)  # the first three are now exactly one window old
    assert check(g) == (True, "approved")


def test_the_gate_keeps_a_day_of_approvals_for_a_rate_limit_set_later() -> None:
    g, clock = gate()  # no rate limit
    for _ in range(3 * 24):  # an order an hour for three days
        assert check(g)[0]
        clock.advance(3600)
    assert len(g._recent) == 24  # a day of history, not every order ever
    g.update_limits(RiskLimits(max_orders_per_window=5, order_window_seconds=86_400), actor="operator")
    assert g.orders_in_window() == 23 and check(g) == (False, "order_rate")


def test_the_order_rate_window_is_at_most_a_day() -> None:
    with pytest.raises(ValueError, match="less than or equal to 86400"):
        RiskLimits(order_window_seconds=86_401)


def test_a_preview_is_not_counted_in_the_order_rate() -> None:
    g, _ = gate(max_orders_per_window=1)
    assert check(g, record=False)[0] and check(g, record=False)[0]
    assert check(g)[0] and not check(g)[0]


def test_only_allowed_symbols_pass() -> None:
    g, _ = gate(allowed_symbols=frozenset({"AAPL"}))
    assert check(g) == (True, "approved")
    assert check(g, symbol="TSLA") == (False, "symbol_not_allowed")


def test_a_notional_limit_without_any_price_denies_rather_than_guesses() -> None:
    g, _ = gate(max_order_notional=D(1000))
    assert check(g, price=None) == (False, "price_unknown")


@pytest.mark.parametrize(("equity", "state"), [(D(99_001), "ACTIVE"), (D(99_000), "REDUCING"), (D(98_999), "REDUCING")])
def test_the_daily_loss_limit_moves_the_state_to_reducing_when_reached(equity: Decimal, state: str) -> None:
    g, _ = gate(daily_loss_limit=D(1000))
    g.observe_equity(D(100_000))
    assert g.observe_equity(equity) == TradingState(state)


def test_reducing_allows_only_orders_that_shrink_a_position_and_lifts_on_the_next_day() -> None:
    g, clock = gate(daily_loss_limit=D(1000))
    g.observe_equity(D(100_000))
    g.observe_equity(D(98_000))
    assert check(g, side="sell", quantity=D(5), projected_position=D(10)) == (True, "approved")
    assert check(g, side="sell", quantity=D(10), projected_position=D(10)) == (True, "approved")
    assert check(g, side="sell", quantity=D(11), projected_position=D(10)) == (False, "reducing_only")
    assert check(g, side="buy", quantity=D(1), projected_position=D(10)) == (False, "reducing_only")
    assert check(g, side="buy", quantity=D(1), projected_position=D(0)) == (False, "reducing_only")
    clock.advance(24 * 3600)
    assert g.observe_equity(D(98_000)) is TradingState.ACTIVE


@pytest.mark.parametrize(("equity", "state"), [(D(99_001), "ACTIVE"), (D(99_000), "HALTED"), (D(98_999), "HALTED")])
def test_max_drawdown_from_the_equity_peak_halts_when_reached(equity: Decimal, state: str) -> None:
    g, _ = gate(max_drawdown=D("0.1"))
    g.observe_equity(D(100_000))
    g.observe_equity(D(110_000))  # the peak
    assert g.observe_equity(equity) == TradingState(state)


def test_halted_denies_every_order_even_a_reducing_one_and_a_new_day_does_not_lift_it() -> None:
    g, clock = gate(max_drawdown=D("0.1"))
    g.observe_equity(D(100_000))
    g.observe_equity(D(80_000))
    assert check(g, side="sell", quantity=D(1), projected_position=D(10)) == (False, "trading_halted")
    clock.advance(24 * 3600)
    assert g.observe_equity(D(80_000)) is TradingState.HALTED


def test_the_kill_switch_halts_at_once_and_only_the_operator_resumes() -> None:
    g, _ = gate()
    g.kill()
    assert g.state is TradingState.HALTED and check(g) == (False, "trading_halted")
    with pytest.raises(LimitChangeRefused) as refused:
        g.resume("mcp")
    assert refused.value.code == "operator_only" and g.state is TradingState.HALTED
    g.resume("operator")
    assert g.state is TradingState.ACTIVE and check(g) == (True, "approved")


def test_states_only_escalate_by_themselves() -> None:
    g, _ = gate(daily_loss_limit=D(1000), max_drawdown=D("0.5"))
    g.kill()
    g.observe_equity(D(100_000))
    g.observe_equity(D(98_000))
    assert g.state is TradingState.HALTED


def test_an_mcp_tool_may_tighten_limits_but_not_loosen_them() -> None:
    g, _ = gate(max_position=D(100), max_order_quantity=D(10))
    g.update_limits(RiskLimits(max_position=D(50), max_order_quantity=D(10)), "mcp")
    assert g.limits.max_position == D(50)
    with pytest.raises(LimitChangeRefused) as refused:
        g.update_limits(RiskLimits(max_position=D(60), max_order_quantity=D(10)), "mcp")
    assert refused.value.code == "loosening_not_allowed" and g.limits.max_position == D(50)
    with pytest.raises(LimitChangeRefused):
        g.update_limits(RiskLimits(max_position=D(50), max_order_quantity=None), "mcp")
    with pytest.raises(LimitChangeRefused) as flag:
        g.update_limits(RiskLimits(max_position=D(50), max_order_quantity=D(10), mcp_may_loosen=True), "mcp")
    assert flag.value.code == "operator_only"
    assert [c.actor for c in g.changes] == ["mcp"]


def test_the_operator_may_let_mcp_loosen_and_every_change_is_recorded() -> None:
    g, _ = gate(max_position=D(100))
    g.update_limits(RiskLimits(max_position=D(100), mcp_may_loosen=True), "operator", "allow tuning")
    g.update_limits(RiskLimits(max_position=D(200), mcp_may_loosen=True), "mcp")
    assert g.limits.max_position == D(200)
    assert [(c.actor, c.fields) for c in g.changes] == [
        ("operator", ("mcp_may_loosen",)),
        ("mcp", ("max_position",)),
    ]


def test_an_mcp_tool_may_not_widen_the_allowed_symbols() -> None:
    g, _ = gate(allowed_symbols=frozenset({"AAPL"}))
    with pytest.raises(LimitChangeRefused):
        g.update_limits(RiskLimits(allowed_symbols=frozenset({"AAPL", "TSLA"})), "mcp")
    g.update_limits(RiskLimits(allowed_symbols=frozenset()), "mcp")
    assert check(g) == (False, "symbol_not_allowed")
