"""The agent loop's decision on one signal, published on `decisions.agent`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.common import ACCOUNT_PATTERN, DEFAULT_ACCOUNT, Contract, Quantity, UtcDatetime
from schemas.signals import SYMBOL_PATTERN

AgentAction = Literal["buy", "sell", "close", "hold"]
AgentOutcome = Literal[
    "decided",  # the model gave a decision object
    "unparsed_answer",  # the model answered, but not with a decision object: hold
    "tool_budget_exhausted",  # it wanted more tool calls than allowed per signal: hold
    "token_budget_exhausted",  # the conversation used more tokens than allowed per signal: hold
    "model_error",  # the Messages API refused the request (not a transient failure): hold
    "stale_signal",  # the signal waited longer than the freshness limit since it fired: no conversation, hold
    "gave_up",  # the conversation failed on every bounded retry (the API was down): hold
]


class AgentDecision(Contract):
    """What the model decided about a signal and why; anything but `decided` is a hold."""

    schema_version: Literal[1] = 1
    account: str = Field(default=DEFAULT_ACCOUNT, pattern=ACCOUNT_PATTERN, description="The account it decided for")
    decision_id: str = Field(min_length=1, max_length=80)
    signal_id: str = Field(min_length=1, max_length=64)
    symbol: str = Field(pattern=SYMBOL_PATTERN)
    action: AgentAction
    quantity: Quantity | None = None
    confidence: float | None = Field(default=None, ge=0, le=1)
    rationale: str = Field(max_length=4000)
    outcome: AgentOutcome
    model: str
    dry_run: bool
    tool_calls: int = Field(ge=0)
    tools_used: list[str] = Field(default_factory=list, description="Tool names in call order")
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    decided_at: UtcDatetime
    correlation_id: str = Field(min_length=1, max_length=128)
