"""Slippage, spread, fees, latency, participation; idempotency, cancel, replace, restore."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from execsim.engine import Engine, EngineConfig
from tests.execsim.engine_helpers import T0, bar, engine, fills, intent, statuses
from tools.clock import TestClock

D = Decimal


def test_fixed_slippage_moves_the_price_against_the_taker() -> None:
    eng, _ = engine(slippage_bps=D(10))
    eng.set_price("AAPL", D(100))
    assert fills(eng.submit(intent("b")))[0].price == D("100.1")
    assert fills(eng.submit(intent("s", side="sell")))[0].price == D("99.9")


def test_a_taker_buys_at_the_ask_and_sells_at_the_bid_of_the_configured_spread() -> None:
    eng, _ = engine(spread_bps=D(20))
    eng.set_price("AAPL", D(100))
    assert eng.quote("AAPL") == (D("99.9"), D("100.1"))
    assert fills(eng.submit(intent("b")))[0].price == D("100.1")
    assert fills(eng.submit(intent("s", side="sell")))[0].price == D("99.9")


def test_volatility_scaled_slippage_grows_with_the_last_bar_range() -> None:
    eng, _ = engine(volatility_slippage=D("0.1"))
    eng.on_bar(bar("100", "102", "98", "100"))  # range 4 % → 0.4 % slippage
    assert fills(eng.submit(intent("b")))[0].price == D("100.4")
    eng.on_bar(bar("100", "101", "99", "100", minutes=2))  # range 2 % → 0.2 %
    assert fills(eng.submit(intent("s", side="sell")))[0].price == D("99.8")


def test_a_resting_limit_touched_intrabar_fills_at_its_limit_without_slippage() -> None:
    eng, _ = engine(slippage_bps=D(50), spread_bps=D(20))
    eng.set_price("AAPL", D(100))
    eng.submit(intent("l", order_type="limit", limit="99"))
    assert fills(eng.on_bar(bar("101", "106", "98", "103")))[0].price == D(99)


def test_slippage_never_pushes_a_marketable_limit_beyond_its_limit() -> None:
    eng, _ = engine(slippage_bps=D(100))
    eng.set_price("AAPL", D(100))
    assert fills(eng.submit(intent("l", order_type="limit", limit="100.5")))[0].price == D("100.5")


def test_fees_in_bps_of_notional_and_per_share_with_a_minimum() -> None:
    eng, _ = engine(fee_bps=D(10))
    eng.set_price("AAPL", D(100))
    assert fills(eng.submit(intent("a", quantity=10)))[0].fee == D("1.00")
    eng, _ = engine(fee_per_share=D("0.005"), fee_min=D(1))
    eng.set_price("AAPL", D(100))
    assert fills(eng.submit(intent("small", quantity=10)))[0].fee == D(1)  # 0.05 is under the minimum
    assert fills(eng.submit(intent("big", quantity=1000)))[0].fee == D(5)
    eng, _ = engine(fee_bps=D(1), fee_per_share=D("0.01"))
    eng.set_price("AAPL", D(100))
    assert fills(eng.submit(intent("both", quantity=100)))[0].fee == D(1) + D(1)


def test_with_latency_a_market_order_fills_only_once_its_delay_has_passed() -> None:
    eng, clock = engine(latency_ms=100)
    eng.set_price("AAPL", D(100))
    assert statuses(eng.submit(intent("m"))) == ["accepted"]
    assert eng.set_price("AAPL", D(101), T0 + timedelta(milliseconds=50)) == []
    clock.advance(0.099)
    assert eng.tick() == []
    clock.advance(0.001)
    out = eng.tick()
    assert statuses(out) == ["fill", "filled"] and fills(out)[0].price == D(101)


def test_with_latency_a_price_after_the_delay_fills_the_order_at_that_price() -> None:
    eng, _ = engine(latency_ms=100)
    eng.set_price("AAPL", D(100))
    eng.submit(intent("m"))
    out = eng.set_price("AAPL", D(102), T0 + timedelta(milliseconds=150))
    assert fills(out)[0].price == D(102)


def test_with_latency_a_bar_that_opens_before_the_order_arrives_does_not_work_it() -> None:
    eng, _ = engine(latency_ms=120_000)
    eng.set_price("AAPL", D(100))
    eng.submit(intent("l", order_type="limit", limit="99"))
    assert eng.on_bar(bar("101", "106", "98", "103", minutes=1)) == []
    assert fills(eng.on_bar(bar("100", "100", "98", "99", minutes=3)))[0].price == D(99)


def test_latency_jitter_is_seeded_and_stays_within_its_bounds() -> None:
    def delays(seed: int) -> list[timedelta]:
        clock = TestClock(T0)
        eng = Engine(clock, EngineConfig(latency_ms=10, latency_jitter_ms=40, seed=seed))
        for i in range(20):
            eng.submit(intent(f"o{i}"))
        return [eng.order(f"o{i}").active_at - T0 for i in range(20)]  # type: ignore[union-attr]

    first = delays(7)
    assert first == delays(7)
    assert first != delays(8)
    assert all(timedelta(milliseconds=10) <= d <= timedelta(milliseconds=50) for d in first)
    assert len(set(first)) > 1


def test_partial_fills_are_capped_at_the_participation_of_each_bar() -> None:
    eng, _ = engine(participation=D("0.1"))
    eng.set_price("AAPL", D(100))
    eng.submit(intent("big", quantity=250, order_type="limit", limit="99"))
    out1 = eng.on_bar(bar("100", "100", "98", "99", volume="1000", minutes=1))
    out2 = eng.on_bar(bar("100", "100", "98", "99", volume="1000", minutes=2))
    out3 = eng.on_bar(bar("100", "100", "98", "99", volume="1000", minutes=3))
    assert [f.quantity for f in fills(out1 + out2 + out3)] == [D(100), D(100), D(50)]
    assert statuses(out1) == ["fill", "partially_filled"] and statuses(out3) == ["fill", "filled"]
    assert [f.fill_id for f in fills(out1 + out2 + out3)] == ["big.f1", "big.f2", "big.f3"]
    assert out2[-1].filled_quantity == D(200)


def test_orders_of_a_symbol_share_one_bar_volume_in_arrival_order() -> None:
    eng, _ = engine(participation=D("0.1"))
    eng.set_price("AAPL", D(100))
    eng.submit(intent("first", quantity=80, order_type="limit", limit="99"))
    eng.submit(intent("second", quantity=80, order_type="limit", limit="99"))
    out = eng.on_bar(bar("100", "100", "98", "99", volume="1000"))
    assert [(f.client_order_id, f.quantity) for f in fills(out)] == [("first", D(80)), ("second", D(20))]


def test_an_ioc_takes_what_the_volume_allows_and_cancels_the_rest_and_a_fok_takes_nothing() -> None:
    eng, _ = engine(participation=D("0.1"))
    eng.on_bar(bar("100", "100", "100", "100", volume="1000"))
    ioc = eng.submit(intent("ioc", quantity=250, tif="IOC"))
    assert statuses(ioc) == ["accepted", "fill", "partially_filled", "canceled"]
    assert fills(ioc)[0].quantity == D(100) and ioc[-1].reason == "ioc_remainder"
    eng.set_price("AAPL", D(100))  # a fresh price: a fresh volume budget
    fok = eng.submit(intent("fok", quantity=250, tif="FOK"))
    assert statuses(fok) == ["accepted", "canceled"] and fok[-1].reason == "fok_not_fillable"
    fits = eng.submit(intent("fok2", quantity=100, tif="FOK"))
    assert statuses(fits) == ["accepted", "fill", "filled"]


def test_the_same_client_order_id_with_the_same_content_is_the_same_order() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    assert len(fills(eng.submit(intent("x")))) == 1
    assert eng.submit(intent("x")) == []


def test_the_same_client_order_id_with_different_content_is_rejected_and_the_first_stands() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    eng.submit(intent("x", order_type="limit", limit="90"))
    out = eng.submit(intent("x", quantity=11, order_type="limit", limit="90"))
    assert statuses(out) == ["rejected"] and out[0].reason == "duplicate_client_order_id"
    assert out[0].event_id != "x.rejected"
    assert eng.order("x").is_open and eng.order("x").intent.quantity == 10  # type: ignore[union-attr]


def test_forget_drops_only_finished_orders() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    eng.submit(intent("done"))
    eng.submit(intent("resting", order_type="limit", limit="90"))
    assert eng.forget("resting") is False and eng.knows("resting")  # open: kept, still worked
    assert eng.forget("done") is True and not eng.knows("done") and eng.order("done") is None
    assert eng.forget("done") is False and eng.forget("never-seen") is False
    assert statuses(eng.submit(intent("done"))) == ["accepted", "fill", "filled"]  # forgotten: a new order


def test_an_order_with_prices_that_do_not_fit_its_type_is_rejected_with_a_reason() -> None:
    eng, _ = engine()
    out = eng.submit(intent("bad", order_type="limit"))
    assert statuses(out) == ["rejected"] and out[0].reason == "limit_price_required"
    assert eng.submit(intent("bad2", order_type="market", stop="5"))[0].reason == "stop_price_not_allowed"


def test_cancel_ends_an_open_order_once_and_is_a_no_op_after() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    eng.submit(intent("l", order_type="limit", limit="90"))
    out = eng.cancel("l", "user")
    assert statuses(out) == ["canceled"] and out[0].reason == "user"
    assert eng.cancel("l") == [] and eng.open_count() == 0
    assert eng.on_bar(bar("89", "90", "88", "89")) == []


def test_a_cancel_that_arrives_before_its_order_makes_the_order_rejected() -> None:
    eng, _ = engine()
    assert eng.cancel("early") == []
    out = eng.submit(intent("early"))
    assert statuses(out) == ["rejected"] and out[0].reason == "canceled_before_accepted"


def test_replace_cancels_the_open_order_and_places_the_new_one() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    eng.submit(intent("v1", order_type="limit", limit="90"))
    out = eng.submit(intent("v2", order_type="limit", limit="95", replaces="v1"))
    assert [(e.client_order_id, e.status) for e in out] == [("v1", "canceled"), ("v2", "accepted")]
    assert out[0].reason == "replaced_by:v2"
    assert [f.client_order_id for f in fills(eng.on_bar(bar("96", "97", "94", "95")))] == ["v2"]


def test_replacing_an_order_that_is_no_longer_open_is_rejected() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    eng.submit(intent("done"))
    out = eng.submit(intent("v2", order_type="limit", limit="95", replaces="done"))
    assert statuses(out) == ["rejected"] and out[0].reason == "replace_target_not_open"


def test_without_a_market_price_a_market_order_fills_at_its_reference_price() -> None:
    eng, _ = engine()
    assert fills(eng.submit(intent("r", reference="123.45")))[0].price == D("123.45")


def test_the_backtest_sequence_fills_at_the_next_open_and_is_deterministic() -> None:
    def run() -> list[object]:
        eng, clock = engine(slippage_bps=D(5), fee_bps=D(1), latency_ms=0)
        eng.on_bar(bar("100", "101", "99", "100", minutes=0))
        eng.set_price("AAPL", D(102), T0 + timedelta(days=1))
        out = eng.submit(intent("bt"))
        out += eng.on_bar(bar("102", "104", "101", "103", minutes=24 * 60))
        return [e.model_dump() for e in out]

    first = run()
    assert first == run()
    fill = next(e for e in first if "fill_id" in e)
    assert fill["price"] == D("102.051")


def test_a_restored_engine_carries_on_where_the_first_one_stopped() -> None:
    eng, _ = engine(participation=D("0.1"))
    eng.set_price("AAPL", D(100))
    order = intent("big", quantity=250, order_type="limit", limit="99")
    eng.submit(order)
    first = fills(eng.on_bar(bar("100", "100", "98", "99", volume="1000")))
    restored = Engine(TestClock(T0), EngineConfig(participation=D("0.1")))
    restored.restore(order, status="partially_filled", filled=D(100), fills=1, notional=D(9900))
    assert restored.submit(order) == []
    out = restored.on_bar(bar("100", "100", "98", "99", volume="2000", minutes=2))
    assert [(f.fill_id, f.quantity) for f in first + fills(out)] == [("big.f1", D(100)), ("big.f2", D(150))]
    assert statuses(out)[-1] == "filled" and out[-1].filled_quantity == D(250)


def test_every_event_the_engine_builds_is_valid_against_its_schema() -> None:
    eng, clock = engine(participation=D("0.5"), fee_bps=D(3), slippage_bps=D(2))
    eng.on_bar(bar("100", "101", "99", "100", volume="10"))
    out = eng.submit(intent("m", quantity=8))
    out += eng.submit(intent("s", order_type="stop_limit", stop="101", limit="102", tif="DAY"))
    out += eng.submit(intent("x", order_type="limit", limit="98"))
    out += eng.on_bar(bar("100", "103", "99", "102", volume="10", minutes=2))
    out += eng.cancel("x")
    out += eng.submit(intent("s", quantity=1))
    assert {type(e).__name__ for e in out} == {"OrderEvent", "Fill"}
    for e in out:
        again = type(e).model_validate_json(e.model_dump_json())
        assert again == e and again.model_dump() == e.model_dump()
