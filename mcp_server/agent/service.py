"""The agent process: its own durable consumer of `signals.normalized`, one decision per signal on `decisions.agent`.

The MCP tools are this server's, built over the process's rebuilt state and reached through an
in-memory MCP client session; `--dry-run` builds the server read-only, so order tools do not exist.
Orders the model places go through the order tools, so through the process's one risk gate (in
`serve --bridge` with `TRADING_MCP_BRIDGE_MODE=agent`, the gate the MCP server uses too).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal as signals
from dataclasses import dataclass, field

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from bus.jetstream import Follower, consume, publish
from mcp_server.agent.loop import AgentLoop, Budget, agent_tools
from mcp_server.prompts_loader import load
from mcp_server.settings import AgentSettings
from mcp_server.state import AppState
from mcp_server.tooling import ToolOptions
from observability import metrics
from schemas.agent import AgentDecision
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tools.clock import Clock, LiveClock
from tools.freshness import DEFAULT_MAX_SIGNAL_AGE_S, signal_age

log = structlog.get_logger("agent")

DURABLE = "agent"
ACK_WAIT_S = 600.0  # one conversation may take minutes; the signal must not be redelivered meanwhile
MAX_ATTEMPTS = 3  # conversations tried per signal (the API down, a crash): then a `gave_up` hold


@dataclass
class AgentWorker:
    js: JetStreamContext
    loop: AgentLoop
    decided: set[str] = field(default_factory=set)
    max_signal_age_s: float = DEFAULT_MAX_SIGNAL_AGE_S
    clock: Clock = field(default_factory=LiveClock)

    async def run(self, stop: asyncio.Event) -> None:
        follower = Follower(self.js, stream="DECISIONS", subject=Subject.AGENT_DECISION.value, handler=self._remember)
        await follower.start()
        await follower.caught_up.wait()
        try:
            await consume(
                self.js,
                stream="SIGNALS",
                durable=DURABLE,
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
        self.decided.add(AgentDecision.model_validate_json(msg.data).signal_id)

    async def handle(self, msg: Msg) -> None:
        signal = NormalizedSignal.model_validate_json(msg.data)
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
            await publish(
                self.js,
                Subject.AGENT_DECISION,
                decision,
                msg_id=f"agent-{signal.signal_id}",
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


async def run_agent_worker(state: AppState, settings: AgentSettings, stop: asyncio.Event) -> None:
    """The agent over `state`, whose risk gate every order the model places must pass."""
    from anthropic import AsyncAnthropic
    from mcp import Client

    from mcp_server.server import build_server

    assert settings.api_key is not None
    # no order ticket here: the agent's model is the only client, and app-only tools are not for models
    options = ToolOptions(
        confirmation=settings.confirmation,
        confirmation_ttl_seconds=settings.confirmation_ttl_seconds,
        apps=False,
        origin="agent",
    )
    server = build_server(state, toolsets_enabled=settings.toolset_names(), read_only=settings.dry_run, options=options)
    async with (
        Client(server) as mcp,
        AsyncAnthropic(api_key=settings.api_key.get_secret_value(), base_url=settings.base_url) as client,
    ):
        tools = agent_tools(list((await mcp.list_tools()).tools), dry_run=settings.dry_run)
        loop = AgentLoop(
            client=client,
            session=mcp.session,
            tools=tools,
            model=settings.model,
            budget=Budget(settings.max_tool_calls, settings.max_tokens, settings.max_tokens_per_turn),
            system_prompt=load("agent_system").render(),
            signal_prompt=load("agent_signal"),
            dry_run=settings.dry_run,
        )
        log.info("agent ready", model=settings.model, tools=[t.name for t in tools], dry_run=settings.dry_run)
        await AgentWorker(state.js, loop, max_signal_age_s=settings.max_signal_age_seconds).run(stop)


async def run_agent(settings: AgentSettings, stop: asyncio.Event | None = None) -> None:
    """`trading-mcp agent`: its own view of the account (folded from the authority's journal); every
    order the model places is decided by the account authority."""
    from mcp_server.service import running_state

    settings.check()
    stop = stop or asyncio.Event()
    async with running_state(settings) as state:
        try:
            await run_agent_worker(state, settings, stop)
        finally:
            stop.set()


def main(settings: AgentSettings) -> None:
    settings.check()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(asyncio.CancelledError):
            await run_agent(settings, stop)

    asyncio.run(run())
