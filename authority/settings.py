"""The account authority's configuration: env prefix TRADING_MCP_AUTHORITY_, limits shared with the rest."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.embedded import default_data_dir
from schemas.account import ACCOUNT_PATTERN, DEFAULT_ACCOUNT
from schemas.accounts import AccountConfig, AccountsFile
from schemas.risk import PAPER_STARTING_CASH, RiskLimits
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

    accounts_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("accounts_file", "TRADING_MCP_ACCOUNTS_FILE"),
        description="The accounts, each with its cash and limits (default <data dir>/accounts.toml, else `account`)",
    )
    member: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Name in the authority pool (default role-host-pid)",
    )
    lease_ttl_seconds: float = Field(
        default=3.0,
        ge=1,
        le=60,
        description="How long an account stays owned by an authority that stopped renewing",
        validation_alias=AliasChoices(
            "lease_ttl_seconds", "TRADING_MCP_AUTHORITY_LEASE_TTL_SECONDS", "TRADING_MCP_LEASE_TTL_SECONDS"
        ),
    )

    def accounts(self) -> AccountsFile:
        """The accounts this pool serves: the accounts file, or the one `account` with this process's cash."""
        from bus.accounts import accounts_path, load_accounts

        if accounts_path(self.data_dir, self.accounts_file) is None:
            return AccountsFile(accounts=[AccountConfig(id=self.account, starting_cash=self.starting_cash)])
        return load_accounts(self.data_dir, self.accounts_file)

    def limits_for(self, config: AccountConfig) -> RiskLimits:
        """An account's limits: the paper defaults for its cash, the limits file and `max_position` of this process
        on top, then the account's own `limits` and `max_position` (none for the one account without a file)."""
        base: dict[str, object] = {}
        if self.risk_limits_file is not None:
            base.update(json.loads(self.risk_limits_file.read_text()))
        if self.max_position is not None:
            base["max_position"] = self.max_position
        return config.risk_limits(base)

    def risk_limits(self) -> RiskLimits:
        """The paper defaults, the limits file on top, `max_position` on top of that (the one account's limits)."""
        return self.limits_for(AccountConfig(id=self.account, starting_cash=self.starting_cash))
