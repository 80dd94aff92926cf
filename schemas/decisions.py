"""A strategy's decision for one symbol on one bar: what it wants to hold, how sure it is, and why."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator

from schemas.common import Contract, UtcDatetime

DecisionSide = Literal["buy", "sell", "flat", "hold"]
DecisionStatus = Literal["ready", "insufficient_data"]


class Decision(Contract):
    """`target` is the wanted position as a signed fraction of equity (0.5 = long half the equity).

    `side` compares `target` with the strategy's previous target: `hold` when unchanged, `flat` when the
    new target is 0, otherwise `buy` (target went up) or `sell` (target went down). Until its indicators
    have warmed up a strategy answers `status="insufficient_data"`, `side="hold"`, target 0, confidence 0.
    """

    schema_version: Literal[1] = 1
    strategy: str
    symbol: str
    ts: UtcDatetime
    status: DecisionStatus
    side: DecisionSide
    target: float = Field(ge=-10, le=10, description="Signed fraction of equity to hold")
    previous_target: float = Field(ge=-10, le=10)
    confidence: float = Field(ge=0, le=1)
    summary: str = Field(description="One sentence a person can read")
    rationale: dict[str, Any] = Field(default_factory=dict, description="The indicator values behind it")

    @field_validator("target", "previous_target", "confidence")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value
