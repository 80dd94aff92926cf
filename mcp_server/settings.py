"""MCP server / bridge configuration."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tools.risk import RiskLimits

Transport = Literal["stdio", "streamable-http", "sse"]


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADING_MCP_", extra="ignore")

    nats_url: str | None = Field(default=None, validation_alias="NATS_URL")
    data_dir: Path
    transport: Transport = "stdio"
    host: str = "127.0.0.1"
    port: int = 8002
    bridge: bool = Field(default=False, description="Run the bridge (signals -> risk gate -> order intents)")
    bridge_mode: Literal["follow"] = "follow"
    default_quantity: Decimal = Field(default=Decimal(1), gt=0)
    max_position: Decimal = Field(default=Decimal(1000), gt=0)
    risk_limits_file: Path | None = Field(
        default=None, description="JSON file with every RiskLimits field (docs/RISK.md); max_position overrides it"
    )

    operator_token_file: Path | None = Field(
        default=None, description="Operator token for risk changes (default <data_dir>/operator_token)"
    )

    def risk_limits(self) -> RiskLimits:
        base = {} if self.risk_limits_file is None else json.loads(self.risk_limits_file.read_text())
        if "max_position" not in base or "max_position" in self.model_fields_set:
            base["max_position"] = self.max_position
        return RiskLimits.model_validate(base)
