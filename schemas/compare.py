"""Accounts compared over one window: each account's performance from its journal (`tools.compare.compare`).

Every account is measured over the same window and sampled on the same grid, so the numbers side by side
mean the same thing. The formulas are in `tools/compare.py`'s docstring.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from schemas.common import ACCOUNT_PATTERN, Contract, Money, UtcDatetime


class AccountStats(Contract):
    """One account's performance over the window, from its journal alone."""

    account: str = Field(pattern=ACCOUNT_PATTERN)
    start: UtcDatetime = Field(description="The window's start (entries at or after it are in the window)")
    end: UtcDatetime = Field(description="The window's end (entries at or before it are in the window)")
    began_in_window: bool = Field(description="The account's first journal entry is inside the window")
    starting_equity: Money = Field(
        description="Equity entering the window; the starting cash when the account began inside it"
    )
    ending_equity: Money = Field(description="Equity after the window's last entry (cash + positions marked)")
    return_pct: Money | None = Field(
        description="(ending − starting) / starting × 100; None when the starting equity is not positive"
    )
    max_drawdown_pct: Money = Field(
        description="Largest fall from the running equity peak, in % of that peak, over every entry in the window"
    )
    sharpe: float | None = Field(
        description="Annualized Sharpe ratio of the equity returns sampled every interval (risk-free rate 0)"
    )
    sharpe_note: str | None = Field(default=None, description="Why `sharpe` is None")
    intervals: int = Field(ge=0, description="Whole intervals in the window: the returns behind `sharpe`")
    orders: int = Field(ge=0, description="Orders admitted in the window")
    denials: int = Field(ge=0, description="Orders denied by the risk gate in the window")
    fills: int = Field(ge=0, description="Fills in the window")
    fees: Money = Field(description="Fees paid on the window's fills")
    realized_pnl: Money = Field(description="PnL realized by the window's fills, before fees")
    open_positions: int = Field(ge=0, description="Symbols with a non-zero position at the window's end")


class AccountComparison(Contract):
    """Several accounts over one window, best return first."""

    start: UtcDatetime
    end: UtcDatetime
    interval: timedelta = Field(description="The equity sampling interval behind the Sharpe ratios")
    accounts: list[AccountStats] = Field(description="Sorted by return, highest first (no return: last)")
    best: str | None = Field(
        description="The account with the highest return; None when there is none or the highest is shared"
    )
