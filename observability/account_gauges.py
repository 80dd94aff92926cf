"""The operator gauges of the MCP server process: account (equity, realized PnL, drawdown, positions) and risk
(trading state, drawdown limit). Set where the state changes: fills and prices (`AppState`), operator
changes (`risk_control`), and at start."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from observability import metrics
from tools.portfolio import Portfolio
from tools.risk import RiskGate


@dataclass
class AccountGauges:
    peak_equity: Decimal | None = None

    def observe(self, portfolio: Portfolio) -> None:
        equity = portfolio.equity()
        if self.peak_equity is None or equity > self.peak_equity:
            self.peak_equity = equity
        peak = self.peak_equity
        metrics.portfolio_equity.set(float(equity))
        metrics.portfolio_realized_pnl.set(float(portfolio.realized_pnl() - portfolio.fees_paid()))
        metrics.portfolio_drawdown_ratio.set(float((peak - equity) / peak) if peak > 0 else 0.0)
        metrics.mcp_active_positions.set(sum(1 for p in portfolio.positions.values() if p.quantity != 0))


def observe_risk(gate: RiskGate) -> None:
    metrics.risk_trading_state.set(metrics.TRADING_STATES[gate.state.value])
    limit = gate.limits.max_drawdown
    # no limit reads as 1 (all of the equity), so `drawdown / limit` in the alert rules stays finite
    metrics.risk_max_drawdown_ratio.set(float(limit) if limit is not None else 1.0)
