"""The decision modes' configuration: whether a bridge runs, which mode, its strategies and sizing; the agent's
own settings are in decisions/agent/settings.py. Validated before anything starts."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(ValueError):
    """A configuration the decision modes refuse to start with; the message says what to set."""


class DecisionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADING_MCP_", extra="ignore")

    nats_url: str | None = Field(default=None, validation_alias="NATS_URL")
    data_dir: Path
    bridge: bool = Field(default=False, description="Run the bridge (signals -> risk gate -> order intents)")
    bridge_mode: Literal["follow", "strategy", "agent"] = "follow"
    default_quantity: Decimal = Field(default=Decimal(1), gt=0)

    strategies: str | None = Field(
        default=None,
        description='strategy mode, per symbol as JSON: {"AAPL": {"strategy": "momentum", "params": {...}}}; '
        '"*" for every other symbol (default hybrid)',
    )
    strategies_file: Path | None = Field(
        default=None, description="The same JSON in a file (TRADING_MCP_STRATEGIES wins)"
    )
    strategy_commission: Decimal = Field(
        default=Decimal(0), ge=0, lt=Decimal("0.1"), description="Costs the sizing reserves, as the backtester's"
    )
    strategy_slippage_bps: Decimal = Field(default=Decimal(0), ge=0, lt=1000)
    strategy_fractional: bool = Field(default=False, description="Size in fractional units (4 decimals)")
    strategy_snapshot_every_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="Strategy mode: how often the bridge stores its strategies' state at its consumer's ack floor (KV "
        "STRATEGY_SNAPSHOT), so a restart replays only the signals after it; 0: never (a start replays every acked "
        "signal)",
    )
