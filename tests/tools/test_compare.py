"""Accounts compared from hand-built journals; every expected number is worked out by hand below."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from schemas.account import AccountEvent, Control, Mark, Owner
from schemas.compare import AccountComparison
from schemas.orders import Fill, OrderIntent, RiskDenied
from schemas.risk import RiskLimits
from tools.compare import compare

D = Decimal
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
H = timedelta(hours=1)
HOURS_PER_YEAR = 8766  # 365.25 × 24: the periods per year of a 1 h interval


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def pct(numerator: int | str, denominator: int | str) -> Decimal:
    return (D(numerator) / D(denominator) * 100).quantize(D("0.000001"))


@dataclass
class Journal:
    """One account's journal, entry by entry, as the authority would append it."""

    account: str
    entries: list[tuple[int, AccountEvent]] = field(default_factory=list)

    def add(self, kind: str, ts: datetime, **payload: object) -> Journal:
        self.entries.append((len(self.entries) + 1, AccountEvent(kind=kind, ts=ts, **payload)))  # type: ignore[arg-type]
        return self

    def begin(self, ts: datetime, cash: int) -> Journal:
        self.add("owner", ts, owner=Owner(member="authority-1", fence=1))
        return self.add("control", ts, control=Control(limits=RiskLimits(), starting_cash=D(cash)))

    def mark(self, ts: datetime, symbol: str, price: str) -> Journal:
        return self.add("mark", ts, mark=Mark(symbol=symbol, price=D(price), ts=ts))

    def trade(
        self, ts: datetime, coid: str, side: str, quantity: int, price: str, fee: str = "0", symbol: str = "XYZ"
    ) -> Journal:
        """An admitted market order and its one fill."""
        intent = OrderIntent(
            account=self.account,
            client_order_id=coid,
            symbol=symbol,
            side=side,  # type: ignore[arg-type]
            quantity=D(quantity),
            reference_price=D(price),
            origin="bridge",
            created_at=ts,
            correlation_id=coid,
        )
        fill = Fill(
            account=self.account,
            fill_id=f"{coid}-f1",
            client_order_id=coid,
            symbol=symbol,
            side=side,  # type: ignore[arg-type]
            quantity=D(quantity),
            price=D(price),
            fee=D(fee),
            ts=ts,
            correlation_id=coid,
        )
        return self.add("admitted", ts, intent=intent).add("fill", ts, fill=fill)

    def deny(self, ts: datetime, coid: str) -> Journal:
        denied = RiskDenied(
            account=self.account,
            client_order_id=coid,
            symbol="XYZ",
            side="buy",
            quantity=D(1000),
            reason_code="max_position",
            message="over the limit",
            origin="bridge",
            ts=ts,
            correlation_id=coid,
        )
        return self.add("denied", ts, denied=denied)


def only(comparison: AccountComparison, account: str = "alpha"):  # type: ignore[no-untyped-def]
    (stats,) = [s for s in comparison.accounts if s.account == account]
    return stats


def test_return_drawdown_and_counts_of_an_account_that_began_in_the_window() -> None:
    j = Journal("alpha").begin(at(0), 10_000)  # the account's own starting cash, not the 100000 default
    j.trade(at(0.2), "a-1", "buy", 50, "100", fee="1")  # cash 10000 − 5000 − 1 = 4999; equity 9999
    j.mark(at(1.2), "XYZ", "120")  # 4999 + 50 × 120 = 10999 (the peak)
    j.mark(at(2.2), "XYZ", "90")  # 4999 + 50 × 90 = 9499 (the trough)
    j.deny(at(2.5), "a-2")
    j.trade(at(3.2), "a-3", "sell", 50, "110", fee="1")  # cash 4999 + 5500 − 1 = 10498; realized (110 − 100) × 50

    stats = only(compare({"alpha": j.entries}))

    assert (stats.start, stats.end, stats.began_in_window) == (at(0), at(3.2), True)
    assert stats.starting_equity == D(10_000)
    assert stats.ending_equity == D(10_498)
    assert stats.return_pct == D("4.98")  # 498 / 10000
    assert stats.max_drawdown_pct == pct(1500, 10_999) == D("13.637603")  # (10999 − 9499) / 10999
    assert (stats.orders, stats.denials, stats.fills, stats.open_positions) == (2, 1, 2, 0)
    assert (stats.fees, stats.realized_pnl) == (D(2), D(500))


def test_sharpe_is_the_mean_over_the_spread_of_hourly_returns_annualized_by_hours_per_year() -> None:
    j = Journal("alpha").begin(at(0), 10_000)
    j.trade(at(0), "a-1", "buy", 100, "100")  # all in: equity 100 × price
    j.mark(at(0.5), "XYZ", "101")  # sample 1 h: 10100, r₁ = +1 %
    j.mark(at(1.5), "XYZ", "104.03")  # sample 2 h: 10403, r₂ = +3 %
    j.mark(at(2.5), "XYZ", "102.9897")  # sample 3 h: 10298.97, r₃ = −1 %

    stats = only(compare({"alpha": j.entries}, start=at(0), end=at(3)))

    # mean 0.01; deviations 0, +0.02, −0.02 → sample variance 0.0008 / 2 = 0.0004, stdev 0.02; 0.01 / 0.02 = 0.5
    assert stats.intervals == 3 and stats.sharpe_note is None
    assert stats.sharpe == pytest.approx(0.5 * math.sqrt(HOURS_PER_YEAR), rel=1e-12)
    assert stats.return_pct == D("2.9897")  # 10298.97 / 10000 − 1
    assert stats.max_drawdown_pct == pct("104.03", "10403")  # from 10403 to 10298.97: 104.03 / 10403


def test_two_intervals_of_two_hours_annualize_by_the_two_hour_periods_in_a_year() -> None:
    j = Journal("alpha").begin(at(0), 10_000)
    j.trade(at(0), "a-1", "buy", 100, "100")
    j.mark(at(1), "XYZ", "101")  # sample 2 h: 10100, r₁ = +1 %
    j.mark(at(3), "XYZ", "104.03")  # sample 4 h: 10403, r₂ = +3 %

    stats = only(compare({"alpha": j.entries}, start=at(0), end=at(4.5), interval=2 * H))

    # mean 0.02, stdev √((0.01² + 0.01²) / 1) = 0.01·√2: Sharpe = √2 · √(8766 / 2) = √8766
    assert stats.intervals == 2
    assert stats.sharpe == pytest.approx(math.sqrt(HOURS_PER_YEAR), rel=1e-12)


def test_fewer_than_two_whole_intervals_or_flat_equity_give_no_sharpe_and_say_why() -> None:
    j = Journal("alpha").begin(at(0), 10_000)
    j.trade(at(0), "a-1", "buy", 100, "100")
    j.mark(at(0.5), "XYZ", "101")

    short = only(compare({"alpha": j.entries}, start=at(0), end=at(1.9)))
    assert (short.intervals, short.sharpe) == (1, None)
    assert short.sharpe_note is not None and "fewer than 2 whole intervals" in short.sharpe_note

    flat = only(compare({"alpha": j.entries}, start=at(1), end=at(4)))  # equity 10100 at every sample
    assert (flat.intervals, flat.sharpe) == (3, None)
    assert flat.sharpe_note is not None and "do not vary" in flat.sharpe_note
    assert (flat.return_pct, flat.max_drawdown_pct) == (D(0), D(0))


def test_the_window_cuts_the_journal_entries_before_it_make_the_starting_state_and_after_it_are_ignored() -> None:
    j = Journal("alpha").begin(at(0), 10_000)
    j.trade(at(0.1), "a-1", "buy", 50, "100")  # before: cash 5000
    j.mark(at(0.5), "XYZ", "110")  # before: equity 5000 + 5500 = 10500, the starting equity
    j.deny(at(1), "a-2")  # exactly at the start: in the window
    j.mark(at(1.5), "XYZ", "105")  # 5000 + 5250 = 10250
    j.trade(at(2), "a-3", "sell", 20, "105", fee="2")  # cash 5000 + 2100 − 2 = 7098; 30 left: 7098 + 3150 = 10248
    j.deny(at(3), "a-4")  # exactly at the end: in the window
    j.mark(at(3.5), "XYZ", "200")  # after the end: ignored
    j.trade(at(4), "a-5", "sell", 30, "200", fee="9")

    stats = only(compare({"alpha": j.entries}, start=at(1), end=at(3)))

    assert stats.began_in_window is False
    assert (stats.starting_equity, stats.ending_equity) == (D(10_500), D(10_248))
    assert stats.return_pct == D("-2.4")  # −252 / 10500
    assert stats.max_drawdown_pct == D("2.4")  # the peak is the starting equity, the trough the end
    assert (stats.orders, stats.denials, stats.fills, stats.open_positions) == (1, 2, 1, 1)
    assert (stats.fees, stats.realized_pnl) == (D(2), D(100))  # (105 − 100) × 20 realized; the 9 fee is after


def test_two_accounts_on_the_same_marks_with_different_fills_get_their_own_stats_best_return_first() -> None:
    # the same market for both: XYZ at 100, 110, 95 and 105 on the hour
    fast = Journal("fast").begin(at(0), 10_000)
    fast.mark(at(0), "XYZ", "100").trade(at(0), "f-1", "buy", 100, "100")  # all in at 100: equity 100 × price
    fast.mark(at(1), "XYZ", "110").mark(at(2), "XYZ", "95").mark(at(3), "XYZ", "105")
    slow = Journal("slow").begin(at(0), 10_000)
    slow.mark(at(0), "XYZ", "100").mark(at(1), "XYZ", "110")
    slow.trade(at(1), "s-1", "buy", 50, "110", fee="5")  # half as much, an hour later: cash 10000 − 5500 − 5 = 4495
    slow.mark(at(2), "XYZ", "95").mark(at(3), "XYZ", "105").deny(at(3), "s-2")

    comparison = compare({"slow": slow.entries, "fast": fast.entries})

    assert [s.account for s in comparison.accounts] == ["fast", "slow"] and comparison.best == "fast"
    assert (comparison.start, comparison.end, comparison.interval) == (at(0), at(3), H)
    f, s = comparison.accounts
    # fast: 10000 → 11000 → 9500 → 10500
    assert (f.starting_equity, f.ending_equity, f.return_pct) == (D(10_000), D(10_500), D(5))
    assert f.max_drawdown_pct == pct(1500, 11_000) == D("13.636364")
    returns = [D(1000) / 10_000, D(-1500) / 11_000, D(1000) / 9500]
    mean = sum(returns) / 3
    spread = (sum((r - mean) ** 2 for r in returns) / 2).sqrt()
    assert f.sharpe == pytest.approx(float(mean / spread) * math.sqrt(HOURS_PER_YEAR), rel=1e-9)
    assert (f.orders, f.denials, f.fills, f.fees, f.realized_pnl, f.open_positions) == (1, 0, 1, 0, 0, 1)
    # slow: 10000, then 4495 + 50 × price: 9995 → 9245 → 9745
    assert (s.starting_equity, s.ending_equity, s.return_pct) == (D(10_000), D(9745), D("-2.55"))
    assert s.max_drawdown_pct == D("7.55")  # (10000 − 9245) / 10000
    returns = [D(-5) / 10_000, D(-750) / 9995, D(500) / 9245]
    mean = sum(returns) / 3
    spread = (sum((r - mean) ** 2 for r in returns) / 2).sqrt()
    assert s.sharpe == pytest.approx(float(mean / spread) * math.sqrt(HOURS_PER_YEAR), rel=1e-9)
    assert (s.orders, s.denials, s.fills, s.fees, s.realized_pnl, s.open_positions) == (1, 1, 1, 5, 0, 1)


def test_a_shared_best_return_names_no_best_account_and_an_empty_journal_is_flat() -> None:
    a = Journal("a").begin(at(0), 10_000)
    b = Journal("b").begin(at(0), 20_000)
    comparison = compare({"b": b.entries, "a": a.entries, "idle": []}, start=at(0), end=at(2))
    assert [s.account for s in comparison.accounts] == ["a", "b", "idle"] and comparison.best is None
    idle = only(comparison, "idle")
    assert (idle.starting_equity, idle.ending_equity, idle.return_pct, idle.orders) == (D(100_000), D(100_000), 0, 0)


def test_a_deposit_of_starting_cash_is_not_a_return() -> None:
    j = Journal("alpha").begin(at(0), 10_000)
    j.trade(at(0.5), "a-1", "buy", 10, "100")
    j.mark(at(1), "XYZ", "110")  # +100 of performance
    j.add("control", at(2), control=Control(limits=RiskLimits(), starting_cash=D(20_000)))  # 10000 put in
    stats = only(compare({"alpha": j.entries}))
    assert (stats.starting_equity, stats.ending_equity) == (D(20_000), D(20_100))
    assert (stats.return_pct, stats.max_drawdown_pct) == (D("0.5"), D(0))


def test_an_impossible_window_is_refused() -> None:
    j = Journal("alpha").begin(at(0), 10_000)
    with pytest.raises(ValueError, match="before it starts"):
        compare({"alpha": j.entries}, start=at(2), end=at(1))
    with pytest.raises(ValueError, match="timezone"):
        compare({"alpha": j.entries}, start=datetime(2026, 3, 2))  # noqa: DTZ001 - the naive time under test
    with pytest.raises(ValueError, match="no journal entries"):
        compare({"alpha": []})
    with pytest.raises(ValueError, match="positive"):
        compare({"alpha": j.entries}, interval=timedelta(0))


def test_the_comparison_travels_as_json_with_decimals_as_strings() -> None:
    j = Journal("alpha").begin(at(0), 10_000)
    comparison = compare({"alpha": j.entries}, start=at(0), end=at(1))
    text = comparison.model_dump_json()
    assert '"starting_equity":"10000"' in text
    assert AccountComparison.model_validate_json(text) == comparison
