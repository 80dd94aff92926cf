"""Bars are matched by their own time: `at_open_of` finds the bar with the smallest time at or after it, and a
bar older than (or the same as) a symbol's latest bar is refused for fills."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from execsim.engine.core import OPENS_KEPT, BarOpens
from schemas.market import Bar
from schemas.signals import NormalizedSignal
from tests.execsim.engine_helpers import T0, bar, engine, fills, intent, statuses

D = Decimal
Y2000 = datetime(2000, 1, 3, 14, 30, tzinfo=UTC)


def bar_at(ts: datetime, o: str, h: str, low: str, c: str, symbol: str = "AAPL") -> Bar:
    return Bar(symbol=symbol, ts=ts, open=D(o), high=D(h), low=D(low), close=D(c), volume=D(0))


def at_open(coid: str, ts: datetime, **kw: object):  # type: ignore[no-untyped-def]
    return intent(coid, **kw).model_copy(update={"at_open_of": ts})  # type: ignore[arg-type]


# ---------------------------------------------------------------- the opens, sorted by the bars' time


def test_bar_opens_answer_by_the_bars_time_not_by_the_order_they_were_remembered_in() -> None:
    opens = BarOpens()
    opens.add(T0, D("200"))  # 2026, remembered first
    opens.add(Y2000, D("20"))  # 2000, remembered after it
    assert opens.first_at_or_after(T0) == D("200")
    assert opens.first_at_or_after(T0 - timedelta(minutes=1)) == D("200")
    assert opens.first_at_or_after(Y2000 - timedelta(days=1)) == D("20")
    assert opens.first_at_or_after(Y2000) == D("20")
    assert opens.first_at_or_after(T0 + timedelta(seconds=1)) is None

    other = BarOpens()  # and the other way round
    other.add(Y2000, D("20"))
    other.add(T0, D("200"))
    assert other.first_at_or_after(T0) == D("200")
    assert other.first_at_or_after(Y2000 + timedelta(seconds=1)) == D("200")
    assert other.first_at_or_after(Y2000) == D("20")


def test_bar_opens_stay_bounded_and_drop_the_oldest_by_time() -> None:
    opens = BarOpens(limit=3)
    for minutes in (10, 30, 20):
        opens.add(T0 + timedelta(minutes=minutes), D(minutes))
    opens.add(T0, D(0))  # older than all three: kept out, the memory is full of later bars
    assert len(opens) == 3 and opens.first_at_or_after(T0) == D(10)
    opens.add(T0 + timedelta(minutes=40), D(40))  # newer: the oldest by time (10) goes
    assert len(opens) == 3 and opens.first_at_or_after(T0) == D(20)
    opens.add(T0 + timedelta(minutes=20), D(21))  # the same bar time again: replaced, not added
    assert len(opens) == 3 and opens.first_at_or_after(T0) == D(21)
    assert BarOpens().limit == OPENS_KEPT


def test_a_2000_bar_after_a_2026_bar_serves_no_order_at_the_open_of_a_2026_time() -> None:
    eng, _ = engine()
    eng.on_bar(bar_at(T0, "200", "201", "199", "200.5"))
    assert eng.on_bar(bar_at(Y2000, "20", "21", "19", "20.5")) == []
    [fill] = fills(eng.submit(at_open("a", T0)))
    assert fill.price == D("200")
    # the refused 2000 bar is not remembered either: an order at the open of 2000 is rejected, never filled
    # at the 2026 open (the demo bars after a send-signal of today)
    [rejected] = eng.submit(at_open("b", Y2000))
    assert (rejected.status, rejected.reason) == ("rejected", "at_open_of_bar_refused")


def test_a_2026_bar_after_a_2000_bar_serves_the_2026_time_and_the_2000_bar_the_2000_time() -> None:
    eng, _ = engine()
    eng.on_bar(bar_at(Y2000, "20", "21", "19", "20.5"))
    eng.on_bar(bar_at(T0, "200", "201", "199", "200.5"))
    [late] = fills(eng.submit(at_open("a", T0 - timedelta(hours=1))))
    [early] = fills(eng.submit(at_open("b", Y2000 - timedelta(days=1))))
    assert (late.price, early.price) == (D("200"), D("20"))


# ---------------------------------------------------------------- a bar older than the latest is refused


def test_a_bar_older_than_the_latest_works_no_order_fills_no_open_and_moves_no_price() -> None:
    eng, _ = engine()
    eng.on_bar(bar("100", "101", "99", "100.5", minutes=5))
    assert statuses(eng.submit(intent("limit", order_type="limit", limit="95"))) == ["accepted"]
    assert statuses(eng.submit(at_open("waiting", T0 + timedelta(minutes=6)))) == ["accepted"]

    old = bar("90", "96", "80", "90", minutes=4)  # through the limit
    assert eng.refusal(old) == "older_than_latest"
    assert eng.on_bar(old) == []
    assert eng.last_price("AAPL") == D("100.5") and eng.stale_bars == 1 and eng.duplicate_bars == 0
    assert {o.intent.client_order_id for o in eng.open_orders()} == {"limit", "waiting"}
    # not remembered either: an order at the open of its time is rejected, never filled at a later bar's open
    # (a decision on a bar from another era, the 2000 bars after a 2026 price)
    [rejected] = eng.submit(at_open("at-4", T0 + timedelta(minutes=4)))
    assert (rejected.status, rejected.reason) == ("rejected", "at_open_of_bar_refused")
    [later] = fills(eng.submit(at_open("at-4.5", T0 + timedelta(minutes=4, seconds=30))))
    assert later.price == D("100"), "a time with no bar at all still means the first later bar's open"

    # a newer bar is applied as ever; the one before it is now older
    events = eng.on_bar(bar("94", "97", "93", "96", minutes=6))
    assert {f.client_order_id: f.price for f in fills(events)} == {"waiting": D("94"), "limit": D("94")}
    assert eng.last_price("AAPL") == D("96")
    assert eng.on_bar(bar("70", "70", "60", "65", minutes=5, symbol="AAPL")) == []
    assert eng.stale_bars == 2 and eng.last_price("AAPL") == D("96")


def test_the_same_bar_again_is_not_applied_twice() -> None:
    eng, _ = engine(participation=D("0.5"))
    eng.submit(intent("a", order_type="limit", limit="95", quantity=10))
    first = bar("96", "97", "94", "96", volume="10", minutes=1)
    [fill] = fills(eng.on_bar(first))
    assert fill.quantity == D(5)
    assert eng.refusal(first) == "duplicate"
    assert eng.on_bar(first) == []  # a second participation slice of the same bar would be a fill too many
    assert eng.duplicate_bars == 1 and eng.stale_bars == 0
    [fill] = fills(eng.on_bar(bar("96", "97", "94", "96", volume="10", minutes=2)))
    assert fill.quantity == D(5)


def test_other_symbols_have_their_own_latest_bar() -> None:
    eng, _ = engine()
    eng.on_bar(bar("100", "101", "99", "100", minutes=10, symbol="AAPL"))
    assert eng.refusal(bar("50", "51", "49", "50", minutes=1, symbol="MSFT")) is None
    eng.on_bar(bar("50", "51", "49", "50", minutes=1, symbol="MSFT"))
    assert eng.last_price("MSFT") == D("50") and eng.stale_bars == 0


def test_a_set_price_does_not_count_as_a_bar() -> None:
    eng, _ = engine()
    eng.set_price("AAPL", D("100"), T0 + timedelta(minutes=5))
    assert eng.refusal(bar("100", "101", "99", "100", minutes=5)) is None


def test_restore_market_keeps_the_latest_bar_as_the_live_engine_did() -> None:
    eng, _ = engine()
    eng.restore_market(bar("100", "101", "99", "100.5", minutes=5))
    eng.restore_market(bar("90", "91", "89", "90", minutes=4))  # refused live, so skipped here
    assert eng.last_price("AAPL") == D("100.5")
    assert eng.refusal(bar("100", "101", "99", "100.5", minutes=5)) == "duplicate"
    eng.restore_market(bar("110", "111", "109", "110", minutes=6))
    assert eng.last_price("AAPL") == D("110")
    [fill] = fills(eng.submit(at_open("a", T0 + timedelta(minutes=4, seconds=30))))
    assert fill.price == D("100")


def test_price_only_signals_are_bars_at_their_receipt_time_and_keep_working_orders() -> None:
    eng, _ = engine()
    eng.submit(intent("a", order_type="limit", limit="99"))
    received = T0
    for price, filled in (("101", False), ("100", False), ("98.5", True)):
        received += timedelta(milliseconds=1)
        signal = NormalizedSignal(
            signal_id=f"sig-{price}",
            source="test",
            symbol="AAPL",
            price=D(price),
            received_at=received,
            correlation_id=f"corr-{price}",
        )
        events = eng.on_bar(Bar.from_signal(signal))
        assert bool(fills(events)) is filled, price
        assert eng.last_price("AAPL") == D(price)
    assert eng.stale_bars == eng.duplicate_bars == 0
