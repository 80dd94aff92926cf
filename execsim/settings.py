"""Execution simulator configuration (env prefix TRADING_MCP_EXECSIM_, `NATS_URL`, `TRADING_MCP_DATA_DIR`)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.embedded import default_data_dir
from execsim.engine import EngineConfig


class ExecSimSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADING_MCP_EXECSIM_", extra="ignore", populate_by_name=True)

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    data_dir: Path | None = Field(
        default_factory=default_data_dir,
        validation_alias="TRADING_MCP_DATA_DIR",
        description="Holds `authority_key`, the order authority's signing key (unless TRADING_MCP_AUTHORITY_KEY)",
    )
    host: str = "127.0.0.1"
    port: int = 8004
    slippage_bps: Decimal = Field(default=Decimal(0), ge=0, le=1000)
    volatility_slippage: Decimal = Field(default=Decimal(0), ge=0, le=10)
    spread_bps: Decimal = Field(default=Decimal(0), ge=0, le=1000)
    fee_bps: Decimal = Field(default=Decimal(0), ge=0, le=1000)
    fee_per_share: Decimal = Field(default=Decimal(0), ge=0)
    fee_min: Decimal = Field(default=Decimal(0), ge=0)
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    latency_jitter_ms: int = Field(default=0, ge=0, le=60_000)
    participation: Decimal | None = Field(default=None, gt=0, le=1)
    intrabar_path: Literal["adaptive", "ohlc"] = "adaptive"
    seed: int = 0
    batch: int = Field(default=128, ge=1, le=1024, description="Messages fetched and published per round")
    accounts_file: Path | None = Field(
        default=None,
        validation_alias="TRADING_MCP_ACCOUNTS_FILE",
        description="The accounts to simulate (default <data dir>/accounts.toml, else the one account paper)",
    )
    member: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Name in the simulator pool (default role-host-pid)",
    )
    snapshot_every_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="How often the owner stores its fold of the streams in the account's snapshot (KV "
        "EXECSIM_SNAPSHOT), so a restart or takeover reads only what came after; 0: none (a rebuild reads the "
        "streams from the start)",
    )
    lease_ttl_seconds: float = Field(
        default=3.0,
        ge=1,
        le=60,
        description="How long an account stays owned by a simulator that stopped renewing",
        validation_alias=AliasChoices(
            "lease_ttl_seconds", "TRADING_MCP_EXECSIM_LEASE_TTL_SECONDS", "TRADING_MCP_LEASE_TTL_SECONDS"
        ),
    )

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            slippage_bps=self.slippage_bps,
            fee_bps=self.fee_bps,
            spread_bps=self.spread_bps,
            volatility_slippage=self.volatility_slippage,
            fee_per_share=self.fee_per_share,
            fee_min=self.fee_min,
            latency_ms=self.latency_ms,
            latency_jitter_ms=self.latency_jitter_ms,
            participation=self.participation,
            intrabar_path=self.intrabar_path,
            seed=self.seed,
        )
