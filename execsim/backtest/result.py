"""What a backtest returns: configuration, equity curve, trades, denials and statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from execsim.backtest.trades import Trade
from schemas.risk import PAPER_STARTING_CASH


class BacktestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cash: Decimal = Field(PAPER_STARTING_CASH, gt=0, description="starting equity, the paper account's by default")
    commission: Decimal = Field(Decimal(0), ge=0, lt=Decimal("0.1"), description="fraction of notional per fill")
    slippage_bps: Decimal = Field(Decimal(0), ge=0, lt=1000, description="fills move this many bps against you")
    fractional: bool = Field(False, description="trade fractional units (4 decimals) instead of whole ones")
    max_position: Decimal | None = Field(None, gt=0, description="risk gate: max absolute units (None: no limit)")
    periods_per_year: float | None = Field(None, gt=0, description="for annualizing; inferred when None")


@dataclass(frozen=True)
class Denial:
    time: datetime
    bar: int
    side: str
    quantity: Decimal
    reason_code: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "side": self.side,
            "quantity": str(self.quantity),
            "reason_code": self.reason_code,
            "message": self.message,
        }


@dataclass
class BacktestResult:
    symbol: str
    strategy: str
    params: dict[str, Any]
    config: BacktestConfig
    ts: np.ndarray
    close: np.ndarray
    equity: np.ndarray
    position: np.ndarray
    trades: list[Trade]
    denials: list[Denial]
    final_equity: Decimal
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "strategy": self.strategy,
            "params": self.params,
            "config": self.config.model_dump(mode="json"),
            "final_equity": str(self.final_equity),
            "stats": self.stats,
            "trades": [t.to_json() for t in self.trades],
            "denials": [d.to_json() for d in self.denials],
        }
