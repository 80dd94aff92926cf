"""One conversation per signal: the `anthropic` tool runner over this server's MCP tools, within budgets.

Bounds per signal: at most `max_tool_calls` tool calls (a turn that would exceed it is not run) and
at most `max_tokens` input + output tokens over all turns. Running out of either, or an answer that
is not a decision object, is a hold, published like any other decision.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from mcp import ClientSession
from mcp.types import Tool

from decisions.agent.verdict import parse_verdict
from prompts.loader import PromptTemplate
from schemas.agent import AgentDecision, AgentOutcome
from schemas.signals import NormalizedSignal
from tools.clock import Clock, LiveClock

if TYPE_CHECKING:  # anthropic loads only where an agent runs: it is half of `serve`'s import time otherwise
    from anthropic import AsyncAnthropic

log = structlog.get_logger("agent")

TRANSIENT_STATUS = {408, 409, 429}


@dataclass(frozen=True)
class Budget:
    max_tool_calls: int
    max_tokens: int
    max_tokens_per_turn: int


def agent_tools(tools: list[Tool], *, dry_run: bool) -> list[Tool]:
    """Dry run: only tools that declare themselves read-only (the server also leaves order tools out)."""
    if not dry_run:
        return tools
    return [t for t in tools if t.annotations is not None and t.annotations.read_only_hint is True]


def signal_data(signal: NormalizedSignal) -> str:
    fields = signal.model_dump(mode="json", exclude={"comment", "schema_version"}, exclude_none=True)
    if signal.comment is not None:
        fields["untrusted_comment"] = signal.comment
    return json.dumps(fields, indent=2, sort_keys=True)


@dataclass
class _Tally:
    tool_calls: int = 0
    tools_used: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class AgentLoop:
    client: AsyncAnthropic
    session: ClientSession
    tools: list[Tool]
    model: str
    budget: Budget
    system_prompt: str
    signal_prompt: PromptTemplate
    dry_run: bool = False
    clock: Clock = field(default_factory=LiveClock)

    async def decide(self, signal: NormalizedSignal) -> AgentDecision:
        from anthropic import APIStatusError

        tally = _Tally()
        try:
            outcome, text = await self._converse(signal, tally)
        except APIStatusError as exc:
            if exc.status_code in TRANSIENT_STATUS or exc.status_code >= 500:
                raise  # redelivered later
            log.warning("messages api refused the request", status=exc.status_code, signal_id=signal.signal_id)
            return self._hold(signal, tally, "model_error", f"the Messages API refused the request ({exc.status_code})")
        if outcome != "decided":
            return self._hold(signal, tally, outcome, _why(outcome, self.budget))
        verdict = parse_verdict(text)
        if verdict is None:
            shown = text.strip()[:300]
            return self._hold(signal, tally, "unparsed_answer", f"the answer was not a decision object: {shown!r}")
        return self._decision(
            signal,
            tally,
            "decided",
            action=verdict.action,
            quantity=verdict.quantity if verdict.action in ("buy", "sell") else None,
            confidence=verdict.confidence,
            rationale=verdict.rationale,
        )

    async def _converse(self, signal: NormalizedSignal, tally: _Tally) -> tuple[AgentOutcome, str]:
        from anthropic.lib.tools.mcp import async_mcp_tool

        runner = self.client.beta.messages.tool_runner(
            model=self.model,
            max_tokens=self.budget.max_tokens_per_turn,
            system=self.system_prompt,
            tools=[async_mcp_tool(t, self.session) for t in self.tools],
            messages=[{"role": "user", "content": self.signal_prompt.render({"signal_json": signal_data(signal)})}],
            max_iterations=self.budget.max_tool_calls + 1,
        )
        last: Any = None
        try:
            async for message in runner:
                last = message
                tally.input_tokens += message.usage.input_tokens
                tally.output_tokens += message.usage.output_tokens
                if tally.tokens > self.budget.max_tokens:
                    return "token_budget_exhausted", ""
                calls = [block.name for block in message.content if block.type == "tool_use"]
                if tally.tool_calls + len(calls) > self.budget.max_tool_calls:
                    return "tool_budget_exhausted", ""
                tally.tool_calls += len(calls)
                tally.tools_used += calls
        finally:
            await runner.close()
        if last is None or any(block.type == "tool_use" for block in last.content):
            return "tool_budget_exhausted", ""
        return "decided", "".join(block.text for block in last.content if block.type == "text")

    def hold(self, signal: NormalizedSignal, outcome: AgentOutcome, why: str) -> AgentDecision:
        """A hold decided without a conversation (a stale signal, or retries exhausted)."""
        return self._hold(signal, _Tally(), outcome, why)

    def _hold(self, signal: NormalizedSignal, tally: _Tally, outcome: AgentOutcome, why: str) -> AgentDecision:
        return self._decision(signal, tally, outcome, action="hold", quantity=None, confidence=None, rationale=why)

    def _decision(
        self, signal: NormalizedSignal, tally: _Tally, outcome: AgentOutcome, **verdict: Any
    ) -> AgentDecision:
        return AgentDecision(
            decision_id=f"agent-{uuid.uuid4().hex}",
            signal_id=signal.signal_id,
            symbol=signal.symbol,
            outcome=outcome,
            model=self.model,
            dry_run=self.dry_run,
            tool_calls=tally.tool_calls,
            tools_used=tally.tools_used,
            input_tokens=tally.input_tokens,
            output_tokens=tally.output_tokens,
            decided_at=self.clock.now(),
            correlation_id=signal.correlation_id,
            **verdict,
        )


def _why(outcome: AgentOutcome, budget: Budget) -> str:
    if outcome == "tool_budget_exhausted":
        return f"held: the model wanted more than {budget.max_tool_calls} tool calls for this signal"
    return f"held: the conversation passed {budget.max_tokens} tokens for this signal"
