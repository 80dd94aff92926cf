"""Each order type × time in force on hand-built bars with known answers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execsim.engine import bar_path
from tests.execsim.engine_helpers import bar, engine, fills, intent, statuses

D = Decimal
# price 100 at submit; then a bar open 101, low 98, high 106, close 103 (adaptive path 101 → 98 → 106 → 103)
BAR = ("101", "106", "98", "103")

ORDERS = {
    "market": {},
    "limit": {"limit": "99"},  # not marketable at 100; touched on the way down to 98 → fills at 99
    "stop": {"stop": "105"},  # not triggered at 100; crossed on the way up to 106 → fills at 105
    "stop_limit": {"stop": "105", "limit": "105.5"},  # triggers at 105, marketable there → fills at 105
}
RESTING_FILL = {"limit": D(99), "stop": D(105), "stop_limit": D(105)}


@pytest.mark.parametrize("tif", ["DAY", "GTC", "IOC", "FOK"])
@pytest.mark.parametrize("order_type", list(ORDERS))
def test_each_order_type_and_time_in_force_gets_its_known_answer(order_type: str, tif: str) -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    at_submit = eng.submit(intent("o1", order_type=order_type, tif=tif, **ORDERS[order_type]))
    at_bar = eng.on_bar(bar(*BAR))
    if order_type == "market":
        assert statuses(at_submit) == ["accepted", "fill", "filled"]
        assert fills(at_submit)[0].price == D(100) and fills(at_submit)[0].quantity == 10
        assert at_bar == []
    elif tif in ("IOC", "FOK"):
        reason = "ioc_not_filled" if tif == "IOC" else "fok_not_fillable"
        assert statuses(at_submit) == ["accepted", "canceled"]
        assert at_submit[-1].reason == reason
        assert at_bar == [] and eng.open_count() == 0
    else:
        assert statuses(at_submit) == ["accepted"]
        expected = (["triggered"] if order_type.startswith("stop") else []) + ["fill", "filled"]
        assert statuses(at_bar) == expected
        assert fills(at_bar)[0].price == RESTING_FILL[order_type]


def test_a_sell_limit_fills_at_its_limit_when_the_path_reaches_it() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    assert statuses(eng.submit(intent("s", side="sell", order_type="limit", limit="105"))) == ["accepted"]
    out = eng.on_bar(bar(*BAR))
    assert fills(out)[0].price == D(105) and statuses(out) == ["fill", "filled"]


def test_a_sell_stop_triggers_on_the_way_down_and_fills_at_the_stop() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    eng.submit(intent("s", side="sell", order_type="stop", stop="99"))
    out = eng.on_bar(bar(*BAR))
    assert statuses(out) == ["triggered", "fill", "filled"] and fills(out)[0].price == D(99)


def test_an_untouched_limit_keeps_resting() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    eng.submit(intent("o", order_type="limit", limit="97"))
    assert eng.on_bar(bar(*BAR)) == [] and eng.open_count() == 1


def test_a_marketable_limit_fills_at_once_at_the_market_price_not_its_limit() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    out = eng.submit(intent("o", order_type="limit", limit="102", tif="IOC"))
    assert statuses(out) == ["accepted", "fill", "filled"] and fills(out)[0].price == D(100)


def test_a_day_order_expires_at_the_first_bar_of_a_later_date_and_a_gtc_order_does_not() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    eng.submit(intent("day", order_type="limit", limit="90", tif="DAY"))
    eng.submit(intent("gtc", order_type="limit", limit="90", tif="GTC"))
    assert eng.on_bar(bar("100", "101", "99", "100", minutes=10)) == []
    next_day = eng.on_bar(bar("95", "96", "89", "92", minutes=24 * 60))
    assert [(e.client_order_id, s) for e, s in zip(next_day, statuses(next_day), strict=True)] == [
        ("day", "expired"),
        ("gtc", "fill"),
        ("gtc", "filled"),
    ]
    assert next_day[0].reason == "end_of_day"


def test_a_day_order_placed_after_the_close_is_good_for_the_next_session() -> None:
    eng, clock = engine()
    eng.on_bar(bar("100", "100", "100", "100", minutes=0))
    clock.advance(8 * 3600)  # after the close, same UTC date
    eng.submit(intent("late", order_type="limit", limit="95", tif="DAY"))
    out = eng.on_bar(bar("96", "97", "94", "96", minutes=24 * 60))
    assert statuses(out) == ["fill", "filled"] and fills(out)[0].price == D(95)


def test_the_adaptive_path_visits_the_nearer_extreme_first() -> None:
    assert bar_path(bar("101", "106", "98", "103")) == (D(101), D(98), D(106), D(103))
    assert bar_path(bar("104", "106", "98", "103")) == (D(104), D(106), D(98), D(103))
    assert bar_path(bar("101", "106", "98", "103"), "ohlc") == (D(101), D(106), D(98), D(103))


@pytest.mark.parametrize(("path", "filled"), [("ohlc", True), ("adaptive", False)])
def test_a_stop_limit_below_its_stop_fills_only_if_the_path_comes_back_after_the_trigger(
    path: str, filled: bool
) -> None:
    # open 101 is nearer the low 97: adaptive goes 101 → 97 → 106 → 105 and never comes back to 102 after
    # triggering at 104; open → high → low → close goes 101 → 106 (trigger) → 97 (touches 102).
    eng, _ = engine(intrabar_path=path)
    eng.set_price("AAPL", D(100))
    eng.submit(intent("sl", order_type="stop_limit", stop="104", limit="102"))
    out = eng.on_bar(bar("101", "106", "97", "105"))
    if filled:
        assert statuses(out) == ["triggered", "fill", "filled"] and fills(out)[0].price == D(102)
    else:
        assert statuses(out) == ["triggered"] and eng.order("sl").triggered  # type: ignore[union-attr]
        later = eng.on_bar(bar("104", "104", "101", "102", minutes=2))
        assert statuses(later) == ["fill", "filled"] and fills(later)[0].price == D(102)


@pytest.mark.parametrize(
    ("side", "order_type", "prices", "gap_bar", "expected"),
    [
        ("buy", "stop", {"stop": "105"}, ("110", "112", "109", "111"), D(110)),
        ("sell", "stop", {"stop": "95"}, ("90", "91", "88", "89"), D(90)),
        ("buy", "limit", {"limit": "99"}, ("97", "98", "96", "97"), D(97)),
        ("sell", "limit", {"limit": "101"}, ("103", "104", "102", "103"), D(103)),
        ("buy", "stop_limit", {"stop": "105", "limit": "111"}, ("110", "112", "109", "111"), D(110)),
    ],
)
def test_a_gap_through_the_order_price_fills_at_the_open(
    side: str, order_type: str, prices: dict[str, str], gap_bar: tuple[str, ...], expected: Decimal
) -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    eng.submit(intent("g", side=side, order_type=order_type, **prices))
    out = eng.on_bar(bar(*gap_bar))
    assert fills(out)[0].price == expected


def test_a_stop_limit_gapping_beyond_its_limit_rests_as_a_limit() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D(100))
    eng.submit(intent("g", order_type="stop_limit", stop="105", limit="108"))
    out = eng.on_bar(bar("110", "112", "109", "111"))
    assert statuses(out) == ["triggered"]
    assert statuses(eng.on_bar(bar("109", "109", "107", "108", minutes=2))) == ["fill", "filled"]
