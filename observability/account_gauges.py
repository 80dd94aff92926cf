"""The operator gauges of the MCP server process: account (equity, return, realized PnL, drawdown, positions,
orders) and risk (trading state, drawdown limit). Set where the state changes: fills and prices (`AppState`),
operator changes (`risk_control`), and at start.

The account series carry an `account` label (the gauges' `account`, default `paper`), so one dashboard
compares accounts side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from observability import metrics
from schemas.common import DEFAULT_ACCOUNT
from tools.account import Account
from tools.portfolio import Portfolio
from tools.risk import RiskGate


@dataclass
class AccountGauges:
    account: str = DEFAULT_ACCOUNT
    peak_equity: Decimal | None = None
    _orders: dict[str, int] = field(default_factory=lambda: {"admitted": 0, "denied": 0})

    def observe(self, portfolio: Portfolio) -> None:
        equity = portfolio.equity()
        if self.peak_equity is None or equity > self.peak_equity:
            self.peak_equity = equity
        peak = self.peak_equity
        start = portfolio.starting_cash
        metrics.portfolio_equity.labels(account=self.account).set(float(equity))
        metrics.portfolio_return_ratio.labels(account=self.account).set(float(equity / start - 1) if start > 0 else 0.0)
        realized = portfolio.realized_pnl() - portfolio.fees_paid()
        metrics.portfolio_realized_pnl.labels(account=self.account).set(float(realized))
        metrics.portfolio_drawdown_ratio.labels(account=self.account).set(
            float((peak - equity) / peak) if peak > 0 else 0.0
        )
        positions = sum(1 for p in portfolio.positions.values() if p.quantity != 0)
        metrics.mcp_active_positions.labels(account=self.account).set(positions)

    def observe_account(self, account: Account) -> None:
        """`observe` the account's portfolio, and count its orders admitted and denied since the last call."""
        self.observe(account.portfolio)
        for outcome, count in (("admitted", account.admitted_total), ("denied", account.denied_total)):
            if count > self._orders[outcome]:
                metrics.portfolio_orders_total.labels(account=self.account, outcome=outcome).inc(
                    count - self._orders[outcome]
                )
                self._orders[outcome] = count


def observe_risk(gate: RiskGate) -> None:
    metrics.risk_trading_state.set(metrics.TRADING_STATES[gate.state.value])
    limit = gate.limits.max_drawdown
    # no limit reads as 1 (all of the equity), so `drawdown / limit` in the alert rules stays finite
    metrics.risk_max_drawdown_ratio.set(float(limit) if limit is not None else 1.0)
