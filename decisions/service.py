"""Start the configured decision mode over an account view: the bridge (follow or strategy) or the agent.

The agent talks to the account through MCP tools; which server it talks to is the caller's choice (the CLI builds
one in-process), so this package imports no other application.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from bus.account_view import AppState
from bus.jetstream import log_if_failed
from decisions.agent.service import durable_of as agent_durable
from decisions.agent.service import run_agent_worker
from decisions.agent.settings import AgentSettings
from decisions.bridge import Bridge
from decisions.settings import ConfigError, DecisionSettings
from decisions.strategy_mode import StrategyConfigError, StrategyMode, parse_choices
from observability.consumer_lag import watch_consumer_lag
from schemas.accounts import AccountConfig, AccountsFile

# builds the MCP server the agent's model uses, over the same account view
AgentServer = Callable[[AppState, AgentSettings], Any]


def mode_of(settings: DecisionSettings, account: AccountConfig | None = None) -> str:
    """The account's decision mode: its own in the accounts file, else the bridge's."""
    return (account.mode if account is not None else None) or settings.bridge_mode


def strategy_mode(settings: DecisionSettings, account: AccountConfig | None = None) -> StrategyMode | None:
    """The bridge's strategies when it runs in strategy mode (a bad choice is a ConfigError); an account's own
    `strategies` in the accounts file win over TRADING_MCP_STRATEGIES."""
    if mode_of(settings, account) != "strategy":
        return None
    own = account.strategies if account is not None else None
    try:
        choices = (
            parse_choices(json.dumps(own))
            if own is not None
            else parse_choices(settings.strategies, settings.strategies_file)
        )
        return StrategyMode(
            choices,
            commission=settings.strategy_commission,
            slippage_bps=settings.strategy_slippage_bps,
            fractional=settings.strategy_fractional,
        )
    except (StrategyConfigError, OSError) as exc:
        where = f" (account {account.id})" if account is not None else ""
        raise ConfigError(f"bridge strategy mode{where}: {exc}") from exc


def agent_settings(settings: DecisionSettings) -> AgentSettings:
    """The agent decision mode's settings: TRADING_MCP_AGENT_* and ANTHROPIC_API_KEY, checked before anything starts."""
    agent = AgentSettings(data_dir=settings.data_dir)
    agent.check()
    return agent


def check(settings: DecisionSettings, accounts: AccountsFile | None = None) -> None:
    """Refuse a bad decision-mode configuration before anything starts."""
    strategy_mode(settings)
    if settings.bridge and settings.bridge_mode == "agent":
        agent_settings(settings)
    for account in accounts.accounts if accounts is not None else ():
        strategy_mode(settings, account)
        if settings.bridge and mode_of(settings, account) == "agent":
            agent_settings(settings)


def start(
    state: AppState,
    settings: DecisionSettings,
    stop: asyncio.Event,
    agent_server: AgentServer,
    account: AccountConfig | None = None,
) -> asyncio.Task[None] | None:
    """The decision mode's task over `state` (None when no bridge runs, or the account's mode is none); it ends once
    `stop` is set. `account`: the account's own mode, strategies and sizing from the accounts file."""
    mode = mode_of(settings, account)
    if not settings.bridge or mode == "none":
        return None
    if mode == "agent":
        agent = agent_settings(settings)
        task = asyncio.create_task(
            run_agent_worker(state, agent, stop, agent_server(state, agent), account),
            name=f"agent-{state.account_id}",
        )
        watch_consumer_lag(state.js, [("SIGNALS", agent_durable(state.account_id))])
    else:
        quantity = (account.default_quantity if account is not None else None) or settings.default_quantity
        bridge = Bridge(
            state,
            "strategy" if mode == "strategy" else "follow",
            quantity,
            strategies=strategy_mode(settings, account),
            snapshot_every=settings.strategy_snapshot_every_seconds,
        )
        task = asyncio.create_task(bridge.run(stop), name=f"bridge-{state.account_id}")
        watch_consumer_lag(state.js, [("SIGNALS", bridge.durable)])
    task.add_done_callback(log_if_failed)
    return task
