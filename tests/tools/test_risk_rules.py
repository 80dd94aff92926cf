"""Every risk rule at its edge (just under, at, just over), the worst case over resting orders, the trading
states and limit changes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from schemas.risk import paper_defaults
from tools.clock import TestClock
from tools.risk import LimitChangeRefused, RiskGate, RiskLimits, TradingState, loosened

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


def test_a_limit_or_stop_order_is_valued_at_the_worse_of_its_own_price_and_the_market() -> None:
    g, _ = gate(max_order_notional=D(1000))
    assert check(g, quantity=D(10), price=D(90), order_type="limit", limit_price=D("100.01")) == (
        False,
        "max_order_notional",
    )
    # a marketable limit (or a stop far below the market) fills at the market: valued at 110, not 100
    assert check(g, quantity=D(10), price=D(110), order_type="limit", limit_price=D(100)) == (
        False,
        "max_order_notional",
    )
    assert check(g, quantity=D(10), price=D(110), order_type="stop", stop_price=D(1)) == (False, "max_order_notional")
    assert check(g, quantity=D(10), price=D(90), order_type="limit", limit_price=D(100)) == (True, "approved")


def test_a_limit_order_with_no_market_price_is_valued_at_its_own_price() -> None:
    g, _ = gate(max_order_notional=D(1000))
    assert check(g, quantity=D(10), price=None, order_type="limit", limit_price=D(100)) == (True, "approved")
    assert check(g, quantity=D(11), price=None, order_type="limit", limit_price=D(100)) == (False, "max_order_notional")


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


def test_a_notional_or_exposure_limit_without_any_price_denies_no_price_rather_than_guesses() -> None:
    g, _ = gate(max_order_notional=D(1000))
    assert check(g, price=None) == (False, "no_price")
    g, _ = gate(max_gross_exposure=D(1000))
    assert check(g, price=None) == (False, "no_price")
    g, _ = gate()
    assert check(g, price=None, order_type="stop_limit") == (False, "no_price")
    assert check(g, price=None) == (True, "approved")  # a market order with no limit that needs a price


@pytest.mark.parametrize(
    ("side", "quantity", "approved"),
    [("buy", D(400), True), ("buy", D("400.01"), False), ("sell", D(400), True), ("sell", D("400.01"), False)],
)
def test_the_position_limit_counts_every_resting_order_of_the_orders_side_and_never_nets_the_sides(
    side: str, quantity: Decimal, approved: bool
) -> None:
    g, _ = gate(max_position=D(1000))
    v = check(g, side=side, quantity=quantity, resting_buys=D(600), resting_sells=D(600))
    assert v == ((True, "approved") if approved else (False, "max_position"))


def test_an_order_may_shrink_a_position_beyond_the_limit_but_never_flip_it_beyond() -> None:
    g, _ = gate(max_position=D(1000))
    assert check(g, quantity=D(500), projected_position=D(-1500)) == (True, "approved")  # -1000: smaller, same side
    assert check(g, quantity=D(2500), projected_position=D(-1500)) == (True, "approved")  # +1000: at the limit
    assert check(g, quantity=D(2600), projected_position=D(-1500)) == (False, "max_position")  # +1100: flipped past it


@pytest.mark.parametrize(
    ("position", "side", "quantity", "resting", "approved"),
    [
        (D(100), "sell", D(100), D(0), True),  # closes it
        (D(100), "sell", D(1), D(100), False),  # with the resting sell it could flip
        (D(100), "sell", D(50), D(50), True),
        (D(-100), "buy", D(100), D(0), True),
        (D(-100), "buy", D(1), D(100), False),
        (D(100), "buy", D(1), D(0), False),  # grows it
        (D(0), "sell", D(1), D(0), False),  # opens one
    ],
)
def test_reducing_admits_only_orders_that_cannot_grow_or_flip_even_with_every_resting_order_filled(
    position: Decimal, side: str, quantity: Decimal, resting: Decimal, approved: bool
) -> None:
    g, _ = gate()
    g.set_state(TradingState.REDUCING, "test")
    rest = {"resting_sells": resting} if side == "sell" else {"resting_buys": resting}
    v = check(g, side=side, quantity=quantity, projected_position=position, **rest)
    assert v == ((True, "approved") if approved else (False, "reducing_only"))


def test_gross_exposure_is_checked_at_the_worst_case_of_the_orders_side() -> None:
    g, _ = gate(max_position=D(5000), max_gross_exposure=D(100_000))
    # long 500 with 400 resting buys at 100: worst case 900 × 100 = 90 000 (the gross passed in)
    assert check(g, quantity=D(100), projected_position=D(500), resting_buys=D(400), gross_exposure=D(90_000)) == (
        True,
        "approved",
    )
    assert check(g, quantity=D(101), projected_position=D(500), resting_buys=D(400), gross_exposure=D(90_000)) == (
        False,
        "max_gross_exposure",
    )
    # a sell that stays within the resting buys' worst case adds nothing
    assert check(
        g, side="sell", quantity=D(100), projected_position=D(500), resting_buys=D(400), gross_exposure=D(150_000)
    ) == (
        True,
        "approved",
    )


def test_a_check_that_records_nothing_prunes_nothing() -> None:
    g, clock = gate(max_orders_per_window=2, order_window_seconds=60)
    assert check(g)[0] and check(g)[0]
    clock.advance(120)
    assert check(g, record=False) == (True, "approved")
    assert len(g._recent) == 2  # still there for a wider window set later (a replay holds them too)
    g.update_limits(RiskLimits(max_orders_per_window=2, order_window_seconds=3600), "operator")
    assert check(g) == (False, "order_rate")


def test_per_symbol_entries_above_the_global_value_count_as_loosening() -> None:
    old = RiskLimits(max_position=D(1000), max_order_quantity=D(10), max_order_notional=D(5000))
    assert loosened(old, old.model_copy(update={"max_position_per_symbol": {"AAPL": D(1001)}})) == [
        "max_position_per_symbol"
    ]
    assert loosened(old, old.model_copy(update={"max_order_quantity_per_symbol": {"AAPL": D(11)}})) == [
        "max_order_quantity_per_symbol"
    ]
    assert loosened(old, old.model_copy(update={"max_order_notional_per_symbol": {"AAPL": D(5001)}})) == [
        "max_order_notional_per_symbol"
    ]
    assert loosened(old, old.model_copy(update={"max_position_per_symbol": {"AAPL": D(999)}})) == []
    tight = old.model_copy(update={"max_position_per_symbol": {"AAPL": D(10)}})
    assert loosened(tight, old) == ["max_position_per_symbol"]  # removing a tighter entry loosens it


def test_paper_defaults_switch_every_limit_on() -> None:
    limits = RiskLimits(**paper_defaults())  # type: ignore[arg-type]
    assert limits.max_order_notional == D(100_000) and limits.max_gross_exposure == D(200_000)
    assert limits.daily_loss_limit == D(5000) and limits.max_drawdown == D("0.25")


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
