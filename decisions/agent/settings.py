"""The agent decision mode's configuration (TRADING_MCP_AGENT_*, ANTHROPIC_API_KEY), checked before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from decisions.settings import ConfigError


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADING_MCP_AGENT_", extra="ignore")

    nats_url: str | None = Field(default=None, validation_alias="NATS_URL")
    data_dir: Path
    api_key: SecretStr | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY")
    base_url: str | None = Field(default=None, validation_alias="ANTHROPIC_BASE_URL")
    model: str = "claude-sonnet-4-5"
    max_tool_calls: int = Field(default=8, ge=1, le=100, description="Tool calls per signal, at most")
    max_tokens: int = Field(default=20_000, ge=256, description="Input + output tokens per signal, at most")
    max_tokens_per_turn: int = Field(default=1024, ge=64, description="max_tokens of each Messages API call")
    dry_run: bool = Field(default=False, description="Leave the order tools out: the agent only decides")
    toolsets: str | None = None
    max_signal_age_seconds: float = Field(
        default=5.0,
        gt=0,
        le=86_400,
        validation_alias="TRADING_MCP_MAX_SIGNAL_AGE_SECONDS",
        description="A signal older than this since it fired gets a stale_signal hold, no conversation",
    )
    confirmation: Literal["token", "auto"] = Field(
        default="token",
        description="token: the model previews and redeems the token itself; auto: the operator lets the agent "
        "place orders without any confirmation step",
    )
    confirmation_ttl_seconds: float = Field(
        default=60.0, gt=0, le=3_600, validation_alias="TRADING_MCP_CONFIRMATION_TTL_SECONDS"
    )

    def toolset_names(self) -> list[str] | None:
        return _csv(self.toolsets)

    def check(self) -> None:
        if self.api_key is None or not self.api_key.get_secret_value().strip():
            raise ConfigError(
                "the agent needs an Anthropic API key: set ANTHROPIC_API_KEY "
                "(and TRADING_MCP_AGENT_MODEL to choose the model, default claude-sonnet-4-5)"
            )
