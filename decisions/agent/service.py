"""The agent process: its own durable consumer of `signals.normalized`, one decision per signal on `decisions.agent`.

The MCP tools come from a server the caller builds over the same account view (cli/serve.py) and are reached
through an in-memory MCP client session; `--dry-run` builds it read-only, so order tools do not exist. Orders
the model places go through the order tools, so through the account authority.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from bus.account_view import AppState
from bus.jetstream import Follower, consume, publish
from decisions.agent.loop import AgentLoop, Budget, agent_tools
from decisions.agent.settings import AgentSettings
from observability import metrics
from prompts.loader import load
from schemas.accounts import AccountConfig
from schemas.agent import AgentDecision
from schemas.common import DEFAULT_ACCOUNT, scoped_id
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tools.clock import Clock, LiveClock
from tools.freshness import DEFAULT_MAX_SIGNAL_AGE_S, signal_age

log = structlog.get_logger("agent")

DURABLE = "agent"


def durable_of(account: str) -> str:
    return DURABLE if account == DEFAULT_ACCOUNT else f"{DURABLE}-{account}"


ACK_WAIT_S = 600.0  # one conversation may take minutes; the signal must not be redelivered meanwhile
MAX_ATTEMPTS = 3  # conversations tried per signal (the API down, a crash): then a `gave_up` hold


@dataclass
class AgentWorker:
    js: JetStreamContext
    loop: AgentLoop
    decided: set[str] = field(default_factory=set)
    max_signal_age_s: float = DEFAULT_MAX_SIGNAL_AGE_S
    clock: Clock = field(default_factory=LiveClock)
    account: str = DEFAULT_ACCOUNT

    @property
    def durable(self) -> str:
        """This account's agent consumer (the default account keeps the name it had)."""
        return durable_of(self.account)

    async def run(self, stop: asyncio.Event) -> None:
        follower = Follower(self.js, stream="DECISIONS", subject=Subject.AGENT_DECISION.value, handler=self._remember)
        await follower.start()
        await follower.caught_up.wait()
        try:
            await consume(
                self.js,
                stream="SIGNALS",
                durable=self.durable,
                subject=Subject.SIGNALS_NORMALIZED.value,
                handler=self.handle,
                stop=stop,
                batch=1,
                ack_wait=ACK_WAIT_S,
                deliver_policy=api.DeliverPolicy.NEW,  # a first start trades new signals, never the backlog
            )
        finally:
            await follower.stop()

    def _remember(self, msg: Msg) -> None:
        decision = AgentDecision.model_validate_json(msg.data)
        if decision.account == self.account:
            self.decided.add(decision.signal_id)

    async def handle(self, msg: Msg) -> None:
        signal = NormalizedSignal.model_validate_json(msg.data)
        if self.account not in signal.accounts:
            return  # routed to other accounts only
        structlog.contextvars.bind_contextvars(correlation_id=signal.correlation_id)
        try:
            if signal.signal_id in self.decided:
                log.info("signal already decided by the agent", signal_id=signal.signal_id)
                return
            if signal.action is None:
                log.info("market update without an action: no conversation", signal_id=signal.signal_id)
                return
            age = signal_age(signal, self.clock.now()).total_seconds()
            if age > self.max_signal_age_s:
                decision = self.loop.hold(
                    signal, "stale_signal", f"the signal fired {age:.1f} s ago (limit {self.max_signal_age_s:g} s)"
                )
            else:
                try:
                    decision = await self.loop.decide(signal)
                except Exception as exc:
                    attempt = msg.metadata.num_delivered if msg.metadata else 1
                    if attempt < MAX_ATTEMPTS:
                        raise  # redelivered, at most MAX_ATTEMPTS times in all
                    log.warning("agent gave up on a signal", signal_id=signal.signal_id, error=repr(exc))
                    decision = self.loop.hold(
                        signal, "gave_up", f"no decision after {attempt} attempts: {type(exc).__name__}"
                    )
            decision = decision.model_copy(update={"account": self.account})
            await publish(
                self.js,
                Subject.AGENT_DECISION,
                decision,
                msg_id=scoped_id(self.account, f"agent-{signal.signal_id}"),
                correlation_id=signal.correlation_id,
            )
            self.decided.add(signal.signal_id)
            metrics.mcp_agent_decisions_total.labels(decision.action, decision.outcome).inc()
            metrics.mcp_agent_tokens_total.labels("input").inc(decision.input_tokens)
            metrics.mcp_agent_tokens_total.labels("output").inc(decision.output_tokens)
            log.info(
                "agent decision",
                signal_id=signal.signal_id,
                action=decision.action,
                outcome=decision.outcome,
                tool_calls=decision.tool_calls,
            )
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")


async def run_agent_worker(
    state: AppState, settings: AgentSettings, stop: asyncio.Event, server: Any, account: AccountConfig | None = None
) -> None:
    """The agent over `state`: the model works through `server`'s MCP tools (built by the caller over the same
    state), so every order it places is decided by the account authority. `account`: the account's own model and
    system prompt from the accounts file, where it sets them."""
    model = (account.agent_model if account is not None else None) or settings.model
    prompt = account.agent_prompt if account is not None else None
    from anthropic import AsyncAnthropic
    from mcp import Client

    assert settings.api_key is not None
    async with (
        Client(server) as mcp,
        AsyncAnthropic(api_key=settings.api_key.get_secret_value(), base_url=settings.base_url) as client,
    ):
        tools = agent_tools(list((await mcp.list_tools()).tools), dry_run=settings.dry_run)
        loop = AgentLoop(
            client=client,
            session=mcp.session,
            tools=tools,
            model=model,
            budget=Budget(settings.max_tool_calls, settings.max_tokens, settings.max_tokens_per_turn),
            system_prompt=prompt or load("agent_system").render(),
            signal_prompt=load("agent_signal"),
            dry_run=settings.dry_run,
        )
        log.info(
            "agent ready",
            account=state.account_id,
            model=model,
            tools=[t.name for t in tools],
            dry_run=settings.dry_run,
        )
        await AgentWorker(
            state.js, loop, max_signal_age_s=settings.max_signal_age_seconds, account=state.account_id
        ).run(stop)
