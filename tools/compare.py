"""Compare accounts over one window, each from its journal alone.

Each journal is folded in order with `tools.account.Account`; an entry's `ts` (the authority's clock when
it applied it) is the time axis. Should a journal's clock ever step back (a new owner on another machine),
an entry's time is the latest `ts` seen so far in that journal, so time never runs back.

The window is [start, end], the same for every account. Omitted, start is the first entry of any journal and
end the last. Entries before `start` make the state entering the window; entries after `end` are ignored.

Equity E is cash + positions marked at the last price (`Portfolio.equity()`). A change of the starting cash
(a control entry) is money put in or taken out, not performance, so every equity below is measured net of
it, in the starting cash in force at the window's end S_end: A = E − S + S_end, S the starting cash then.

- starting_equity A₀ = A entering the window; for an account that began inside the window (no entry before
  `start`) that is its starting cash S_end.
- ending_equity = A after the window's last entry.
- return_pct = (ending − A₀) / A₀ × 100 (None when A₀ ≤ 0).
- max_drawdown_pct = max over A₀ and A after each entry in the window of (P − A) / P × 100, where P is the
  running peak of those values (starting at A₀). 0 when equity never falls.
- sharpe: the grid t_k = start + k·interval for k = 1..n, n = ⌊(end − start) / interval⌋ (whole intervals);
  A_k = A after every entry at or before t_k (A₀ as above); returns r_k = A_k / A_{k−1} − 1;
  sharpe = mean(r) / stdev(r) · √(periods per year), stdev with n − 1 degrees of freedom, periods per year
  = 365.25 days / interval (journal time is calendar time), risk-free rate 0. None, with `sharpe_note`
  saying why, when n < 2, when an A_{k−1} ≤ 0, or when the returns do not vary.
- orders, denials, fills: admissions, denials and fills first seen in the window (a repeated entry counts
  once, as the fold applies it once); fees and realized_pnl (before fees): their change over the window.
- open_positions: symbols with a non-zero position at the window's end.

Percentages are rounded to 6 decimal places (half even).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from schemas.account import AccountEvent
from schemas.compare import AccountComparison, AccountStats
from tools.account import Account

ZERO = Decimal(0)
HUNDRED = Decimal(100)
PCT_PLACES = Decimal("0.000001")
YEAR = timedelta(days=365.25)
DEFAULT_INTERVAL = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class _Totals:
    """The account's cumulative counts at one point of the fold."""

    orders: int
    denials: int
    fills: int
    fees: Decimal
    realized: Decimal

    @classmethod
    def of(cls, account: Account) -> _Totals:
        p = account.portfolio
        return cls(account.admitted_total, account.denied_total, p.fill_count, p.fees_paid(), p.realized_pnl())


def compare(
    journals: Mapping[str, Iterable[tuple[int, AccountEvent]]],
    start: datetime | None = None,
    end: datetime | None = None,
    interval: timedelta = DEFAULT_INTERVAL,
) -> AccountComparison:
    """Every account's stats over the same window, best return first (see the module docstring)."""
    if interval <= timedelta(0):
        raise ValueError(f"interval must be positive, got {interval}")
    entries = {account: sorted(journal, key=lambda e: e[0]) for account, journal in journals.items()}
    times = [event.ts for journal in entries.values() for _, event in journal]
    if (start is None or end is None) and not times:
        raise ValueError("no journal entries: give both start and end for an empty window")
    window_start = _utc(start, "start") if start is not None else min(times)
    window_end = _utc(end, "end") if end is not None else max(times)
    if window_end < window_start:
        raise ValueError(f"the window ends ({window_end.isoformat()}) before it starts ({window_start.isoformat()})")
    n = (window_end - window_start) // interval
    grid = [window_start + k * interval for k in range(1, n + 1)]
    stats = [_stats(account, journal, window_start, window_end, grid, interval) for account, journal in entries.items()]
    stats.sort(key=lambda s: (s.return_pct is None, -(s.return_pct or ZERO), s.account))
    best = None
    if stats and stats[0].return_pct is not None and (len(stats) == 1 or stats[1].return_pct != stats[0].return_pct):
        best = stats[0].account
    return AccountComparison(start=window_start, end=window_end, interval=interval, accounts=stats, best=best)


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must carry a timezone (UTC)")
    return value.astimezone(UTC)


def _stats(
    account_id: str,
    journal: list[tuple[int, AccountEvent]],
    start: datetime,
    end: datetime,
    grid: list[datetime],
    interval: timedelta,
) -> AccountStats:
    account = Account(account_id=account_id)
    pos = 0
    latest: datetime | None = None

    def next_time() -> datetime | None:
        if pos >= len(journal):
            return None
        ts = journal[pos][1].ts
        return ts if latest is None or ts > latest else latest

    def apply() -> None:
        nonlocal pos, latest
        seq, event = journal[pos]
        latest = next_time()
        account.apply(event, seq)
        pos += 1

    def equity() -> tuple[Decimal, Decimal]:
        return account.portfolio.equity(), account.portfolio.starting_cash

    while (t := next_time()) is not None and t < start:
        apply()
    began_in_window = pos == 0
    entering, before = equity(), _Totals.of(account)
    points: list[tuple[Decimal, Decimal]] = []  # after each entry in the window
    samples: list[tuple[Decimal, Decimal]] = []  # at each grid time
    for at in [*grid, end]:
        while (t := next_time()) is not None and t <= at:
            apply()
            points.append(equity())
        samples.append(equity())
    samples.pop()  # the last one is `end`, not a grid time
    after = _Totals.of(account)
    final_cash = account.portfolio.starting_cash

    def net(point: tuple[Decimal, Decimal]) -> Decimal:
        cash_equity, starting_cash = point
        return cash_equity - starting_cash + final_cash

    first = net(entering)
    last = net(points[-1]) if points else first
    sharpe, note = _sharpe([first, *(net(s) for s in samples)], interval)
    return AccountStats(
        account=account_id,
        start=start,
        end=end,
        began_in_window=began_in_window,
        starting_equity=first,
        ending_equity=last,
        return_pct=_pct((last - first) / first) if first > 0 else None,
        max_drawdown_pct=_pct(_max_drawdown([first, *(net(p) for p in points)])),
        sharpe=sharpe,
        sharpe_note=note,
        intervals=len(grid),
        orders=after.orders - before.orders,
        denials=after.denials - before.denials,
        fills=after.fills - before.fills,
        fees=after.fees - before.fees,
        realized_pnl=after.realized - before.realized,
        open_positions=sum(1 for p in account.portfolio.positions.values() if p.quantity != 0),
    )


def _pct(fraction: Decimal) -> Decimal:
    return (fraction * HUNDRED).quantize(PCT_PLACES)


def _max_drawdown(curve: list[Decimal]) -> Decimal:
    peak, worst = curve[0], ZERO
    for value in curve:
        peak = max(peak, value)
        if peak > 0:
            worst = max(worst, (peak - value) / peak)
    return worst


def _sharpe(curve: list[Decimal], interval: timedelta) -> tuple[float | None, str | None]:
    n = len(curve) - 1
    if n < 2:
        return None, f"fewer than 2 whole intervals of {interval} in the window ({n}): no spread of returns"
    if any(value <= 0 for value in curve[:-1]):
        return None, "equity was not positive at a sample: returns are undefined"
    returns = [curve[k] / curve[k - 1] - 1 for k in range(1, len(curve))]
    spread = statistics.stdev(returns)
    if spread == 0:
        return None, "the sampled equity returns do not vary (zero volatility)"
    micro = timedelta(microseconds=1)
    periods_per_year = Decimal(YEAR // micro) / Decimal(interval // micro)
    return float(statistics.mean(returns) / spread * periods_per_year.sqrt()), None
