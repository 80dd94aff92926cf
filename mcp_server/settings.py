"""The MCP server's configuration, validated at start-up (the decision modes have theirs in decisions/)."""

from __future__ import annotations

import ipaddress
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.common import ACCOUNT_PATTERN, DEFAULT_ACCOUNT

Transport = Literal["stdio", "streamable-http", "sse"]
MIN_TOKEN_CHARS = 24
LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")


class ConfigError(ValueError):
    """A configuration the process refuses to start with; the message says what to set."""


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADING_MCP_", extra="ignore")

    nats_url: str | None = Field(default=None, validation_alias="NATS_URL")
    data_dir: Path
    transport: Transport = Field(
        default="stdio", description="stdio (Claude Desktop), streamable-http (/mcp), or sse (deprecated)"
    )
    host: str = Field(default="127.0.0.1", description="HTTP bind address (beyond loopback needs a token or OAuth)")
    port: int = Field(default=8002, description="HTTP port")
    toolsets: str | None = Field(
        default=None,
        description="Tool groups, e.g. market,positions; `all` for every one (default market,positions,risk,orders)",
    )
    read_only: bool = Field(default=False, description="Never register tools that can change the account")
    account: str = Field(
        default=DEFAULT_ACCOUNT,
        pattern=ACCOUNT_PATTERN,
        description="The account this server's clients act on; every other account is invisible to them",
    )
    accounts_file: Path | None = Field(
        default=None, description="The accounts (default <data dir>/accounts.toml, else the one account paper)"
    )
    auth_token: SecretStr | None = Field(default=None, description="Bearer token for HTTP; required beyond loopback")
    auth_tokens_file: Path | None = Field(
        default=None,
        description="HTTP bearer tokens and the accounts each acts on (TOML/JSON; mcp_server.credentials_map)",
    )
    oauth_issuer: str | None = Field(default=None, description="OAuth issuer (mcp_server.auth.OAuthSettings)")
    allowed_hosts: str = Field(default="", description="Extra Host header values for HTTP, e.g. mcp.example.org:*")
    allowed_origins: str = Field(default="", description="Extra Origin values for HTTP, e.g. https://app.example.org")
    rate_limit_per_minute: float = Field(default=600, gt=0, description="Tool calls a minute (all clients)")
    rate_limit_burst: int = Field(default=60, ge=1)
    confirmation: Literal["best", "human", "token", "auto"] = Field(
        default="best",
        description="How place_order gets a yes: best (a person where the client can, else the preview token), "
        "human (a person always), token (the preview token); auto is only for the agent loop",
    )
    confirmation_ttl_seconds: float = Field(
        default=60.0, gt=0, le=3_600, description="How long a preview's confirmation token lasts"
    )
    price_band_bps: Decimal = Field(
        default=Decimal(50), ge=0, le=10_000, description="A market move beyond this since the preview voids it"
    )
    elicitation_timeout_seconds: float = Field(
        default=120.0, gt=0, le=3_600, description="How long place_order waits for the user's answer"
    )
    confirmation_key: SecretStr | None = Field(
        default=None,
        description="Key for confirmation tokens and sealed elicitation state (hex, 32 bytes); default: "
        "<data dir>/confirmation.key, shared by every replica on that data dir",
    )
    require_confirmation: bool | None = Field(default=None, description="Replaced by TRADING_MCP_CONFIRMATION")

    def toolset_names(self) -> list[str] | None:
        return _csv(self.toolsets)

    def check_confirmation(self) -> None:
        if self.require_confirmation is not None:
            raise ConfigError(
                "TRADING_MCP_REQUIRE_CONFIRMATION is no longer read: set TRADING_MCP_CONFIRMATION to best (the "
                "default: a person where the client can, else the preview token), human or token"
            )
        if self.confirmation == "auto":
            raise ConfigError(
                "TRADING_MCP_CONFIRMATION=auto (no confirmation) is only for the agent loop: set "
                "TRADING_MCP_AGENT_CONFIRMATION=auto for it, and best, human or token for serve"
            )
        if self.confirmation_key is not None:
            try:
                key = bytes.fromhex(self.confirmation_key.get_secret_value())
            except ValueError:
                key = b""
            if len(key) < 32:
                raise ConfigError("TRADING_MCP_CONFIRMATION_KEY must be at least 32 bytes as hex (64 hex digits)")

    def host_patterns(self) -> list[str]:
        extra = [] if is_loopback(self.host) or self.host in ("0.0.0.0", "::") else [f"{self.host}:*"]
        return [*LOOPBACK_HOSTS, *extra, *(_csv(self.allowed_hosts) or [])]

    def origin_patterns(self) -> list[str]:
        return [*LOOPBACK_ORIGINS, *(_csv(self.allowed_origins) or [])]

    def check_exposure(self) -> None:
        """HTTP beyond loopback needs a bearer token; refuse to start otherwise."""
        if self.transport == "stdio" or is_loopback(self.host):
            if self.auth_token is not None:
                self._check_token(self.auth_token)
            return
        if self.auth_token is None and self.oauth_issuer:
            return
        if self.auth_token is None:
            raise ConfigError(
                f"refusing to serve MCP over HTTP on {self.host} (beyond loopback) without a bearer token: "
                f"set TRADING_MCP_AUTH_TOKEN to a random secret of at least {MIN_TOKEN_CHARS} characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or bind --host 127.0.0.1"
            )
        self._check_token(self.auth_token)

    @staticmethod
    def _check_token(token: SecretStr) -> None:
        if len(token.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ConfigError(f"TRADING_MCP_AUTH_TOKEN is shorter than {MIN_TOKEN_CHARS} characters; use a random one")
