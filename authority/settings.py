"""The account authority's configuration: env prefix TRADING_MCP_AUTHORITY_, limits shared with the rest."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.embedded import default_data_dir
from schemas.account import ACCOUNT_PATTERN, DEFAULT_ACCOUNT
from schemas.risk import PAPER_STARTING_CASH, RiskLimits, paper_defaults
from tools.freshness import DEFAULT_MAX_SIGNAL_AGE_S


class AuthoritySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADING_MCP_AUTHORITY_", extra="ignore")

    nats_url: str | None = Field(default=None, validation_alias="NATS_URL")
    data_dir: Path = Field(
        default_factory=default_data_dir, validation_alias=AliasChoices("data_dir", "TRADING_MCP_DATA_DIR")
    )
    host: str = "127.0.0.1"
    port: int = 8003
    account: str = Field(default=DEFAULT_ACCOUNT, pattern=ACCOUNT_PATTERN)
    starting_cash: Decimal = Field(default=PAPER_STARTING_CASH, gt=0)
    max_position: Decimal | None = Field(
        default=None,
        gt=0,
        validation_alias=AliasChoices("max_position", "TRADING_MCP_AUTHORITY_MAX_POSITION", "TRADING_MCP_MAX_POSITION"),
    )
    risk_limits_file: Path | None = Field(
        default=None,
        description="JSON with RiskLimits fields on top of the paper defaults (docs/RISK.md)",
        validation_alias=AliasChoices(
            "risk_limits_file", "TRADING_MCP_AUTHORITY_RISK_LIMITS_FILE", "TRADING_MCP_RISK_LIMITS_FILE"
        ),
    )
    operator_token_file: Path | None = Field(
        default=None,
        description="The operator token that signs risk control records (default <data_dir>/operator_token)",
        validation_alias=AliasChoices(
            "operator_token_file", "TRADING_MCP_AUTHORITY_OPERATOR_TOKEN_FILE", "TRADING_MCP_OPERATOR_TOKEN_FILE"
        ),
    )
    max_signal_age_seconds: float = Field(
        default=DEFAULT_MAX_SIGNAL_AGE_S,
        gt=0,
        le=86_400,
        description="A signal older than this (since it fired) is recorded as stale_signal, never traded",
        validation_alias=AliasChoices(
            "max_signal_age_seconds",
            "TRADING_MCP_AUTHORITY_MAX_SIGNAL_AGE_SECONDS",
            "TRADING_MCP_MAX_SIGNAL_AGE_SECONDS",
        ),
    )

    def risk_limits(self) -> RiskLimits:
        """The paper defaults, the limits file on top, `max_position` on top of that."""
        values: dict[str, object] = paper_defaults(self.starting_cash)
        if self.risk_limits_file is not None:
            values.update(json.loads(self.risk_limits_file.read_text()))
        if self.max_position is not None:
            values["max_position"] = self.max_position
        return RiskLimits.model_validate(values)
