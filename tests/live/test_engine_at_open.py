"""Market orders `at_open_of` a bar fill at that bar's open, whether the bar came before or after the order."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from tests.execsim.engine_helpers import T0, bar, engine, fills, intent, statuses

D = Decimal


def at_open(coid: str, minutes: float, **kw: object):  # type: ignore[no-untyped-def]
    return intent(coid, **kw).model_copy(update={"at_open_of": T0 + timedelta(minutes=minutes)})  # type: ignore[arg-type]


def test_an_order_at_the_open_of_a_bar_not_seen_yet_rests_until_that_bar_and_fills_at_its_open() -> None:
    eng, clock = engine(fee_bps=D(10))
    eng.on_bar(bar("100", "101", "99", "100.5", minutes=1))
    events = eng.submit(at_open("a", 2))
    assert statuses(events) == ["accepted"]
    assert eng.tick() == [] and eng.set_price("AAPL", D("250")) == []
    events = eng.on_bar(bar("102.123456", "104", "101", "103", minutes=2))
    [fill] = fills(events)
    assert fill.price == D("102.1235")
    assert fill.fee == (D(10) * D("102.1235") * D("0.001")).quantize(D("0.0001"))


def test_an_order_at_the_open_of_a_bar_already_seen_fills_at_once_at_that_open_not_the_last_close() -> None:
    eng, _ = engine()
    eng.on_bar(bar("100", "101", "99", "100.5", minutes=1))
    eng.on_bar(bar("102", "104", "101", "103", minutes=2))
    eng.on_bar(bar("105", "106", "104", "105.5", minutes=3))
    [fill] = fills(eng.submit(at_open("a", 2, side="sell")))
    assert fill.price == D("102")


def test_a_missed_bar_means_the_open_of_the_first_later_bar() -> None:
    eng, _ = engine()
    eng.on_bar(bar("100", "101", "99", "100.5", minutes=1))
    [fill] = fills(eng.submit(at_open("a", 0.5)))
    assert fill.price == D("100")


def test_at_open_of_on_a_limit_order_is_rejected_with_a_reason() -> None:
    eng, _ = engine()
    events = eng.submit(at_open("a", 1, order_type="limit", limit="100"))
    assert statuses(events) == ["rejected"] and events[0].reason == "at_open_of_market_only"
