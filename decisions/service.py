"""Start the configured decision mode over an account view: the bridge (follow or strategy) or the agent.

The agent talks to the account through MCP tools; which server it talks to is the caller's choice (the CLI builds
one in-process), so this package imports no other application.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bus.account_view import AppState
from bus.jetstream import log_if_failed
from decisions.agent.service import DURABLE as AGENT_DURABLE
from decisions.agent.service import run_agent_worker
from decisions.agent.settings import AgentSettings
from decisions.bridge import DURABLE as BRIDGE_DURABLE
from decisions.bridge import Bridge
from decisions.settings import ConfigError, DecisionSettings
from decisions.strategy_mode import StrategyConfigError, StrategyMode, parse_choices
from observability.consumer_lag import watch_consumer_lag

# builds the MCP server the agent's model uses, over the same account view
AgentServer = Callable[[AppState, AgentSettings], Any]


def strategy_mode(settings: DecisionSettings) -> StrategyMode | None:
    """The bridge's strategies when it runs in strategy mode (a bad choice is a ConfigError)."""
    if settings.bridge_mode != "strategy":
        return None
    try:
        return StrategyMode(
            parse_choices(settings.strategies, settings.strategies_file),
            commission=settings.strategy_commission,
            slippage_bps=settings.strategy_slippage_bps,
            fractional=settings.strategy_fractional,
        )
    except (StrategyConfigError, OSError) as exc:
        raise ConfigError(f"bridge strategy mode: {exc}") from exc


def agent_settings(settings: DecisionSettings) -> AgentSettings:
    """The agent decision mode's settings: TRADING_MCP_AGENT_* and ANTHROPIC_API_KEY, checked before anything starts."""
    agent = AgentSettings(data_dir=settings.data_dir)
    agent.check()
    return agent


def check(settings: DecisionSettings) -> None:
    """Refuse a bad decision-mode configuration before anything starts."""
    strategy_mode(settings)
    if settings.bridge and settings.bridge_mode == "agent":
        agent_settings(settings)


def start(
    state: AppState, settings: DecisionSettings, stop: asyncio.Event, agent_server: AgentServer
) -> asyncio.Task[None] | None:
    """The decision mode's task over `state` (None when no bridge runs); it ends once `stop` is set."""
    if not settings.bridge:
        return None
    if settings.bridge_mode == "agent":
        agent = agent_settings(settings)
        task = asyncio.create_task(run_agent_worker(state, agent, stop, agent_server(state, agent)), name="agent")
        watch_consumer_lag(state.js, [("SIGNALS", AGENT_DURABLE)])
    else:
        bridge = Bridge(state, settings.bridge_mode, settings.default_quantity, strategies=strategy_mode(settings))
        task = asyncio.create_task(bridge.run(stop), name="bridge")
        watch_consumer_lag(state.js, [("SIGNALS", BRIDGE_DURABLE)])
    task.add_done_callback(log_if_failed)
    return task
