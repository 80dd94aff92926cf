"""The accounts file: which paper accounts exist, and each one's cash, limits and decision mode.

An account is the unit of partitioning: its own starting cash, portfolio, limits, trading state,
decision mode and order authority. Without a file there is one account, `paper`, configured by the
environment as before. A file (TOML, `<data dir>/accounts.toml` or TRADING_MCP_ACCOUNTS_FILE):

    [[accounts]]
    id = "momo"                      # ^[A-Za-z0-9_-]{1,32}$
    starting_cash = 50000            # default: 100000
    mode = "strategy"                # follow | strategy | agent | none (default: the bridge's mode)
    strategies = { "*" = { strategy = "momentum" } }
    max_position = 20                # any RiskLimits field in `limits` too
    limits = { max_open_orders = 10 }

    [[accounts]]
    id = "meanrev"
    mode = "strategy"
    strategies = { "*" = { strategy = "mean_reversion" } }

Which signals feed which account is the gateway's sources file (`accounts`, `symbol_accounts`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.common import ACCOUNT_PATTERN, DEFAULT_ACCOUNT
from schemas.risk import PAPER_STARTING_CASH, RiskLimits, paper_defaults

AccountMode = Literal["follow", "strategy", "agent", "none"]


class AccountConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ACCOUNT_PATTERN)
    starting_cash: Decimal = Field(default=PAPER_STARTING_CASH, gt=0)
    mode: AccountMode | None = Field(default=None, description="None: the bridge's configured mode")
    strategies: dict[str, Any] | None = Field(
        default=None, description='strategy mode, per symbol: {"AAPL": {"strategy": "momentum"}, "*": {...}}'
    )
    default_quantity: Decimal | None = Field(default=None, gt=0)
    max_position: Decimal | None = Field(default=None, gt=0)
    limits: dict[str, Any] = Field(default_factory=dict, description="RiskLimits fields on top of the defaults")
    agent_model: str | None = Field(default=None, max_length=100)
    agent_prompt: str | None = Field(default=None, max_length=20_000, description="The agent's system prompt")

    def risk_limits(self, base: dict[str, Any] | None = None) -> RiskLimits:
        """The paper defaults for this account's cash, `base` (the environment's limits file) on top, then this
        account's own `limits` and `max_position`."""
        values: dict[str, Any] = paper_defaults(self.starting_cash)
        values.update(base or {})
        values.update(self.limits)
        if self.max_position is not None:
            values["max_position"] = self.max_position
        return RiskLimits.model_validate(values)


class AccountsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: list[AccountConfig] = Field(min_length=1, max_length=256)

    @field_validator("accounts")
    @classmethod
    def _unique(cls, accounts: list[AccountConfig]) -> list[AccountConfig]:
        seen: set[str] = set()
        for account in accounts:
            if account.id in seen:
                raise ValueError(f"account {account.id!r} is listed twice")
            seen.add(account.id)
        return accounts

    def get(self, account: str) -> AccountConfig | None:
        return next((a for a in self.accounts if a.id == account), None)

    @property
    def ids(self) -> list[str]:
        return [a.id for a in self.accounts]


def single(starting_cash: Decimal = PAPER_STARTING_CASH) -> AccountsFile:
    """No accounts file: the one default account."""
    return AccountsFile(accounts=[AccountConfig(id=DEFAULT_ACCOUNT, starting_cash=starting_cash)])
