"""Gateway configuration: one Settings per process, validated at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_FILE = "webhook_secret"


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADING_MCP_", extra="ignore")

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    host: str = "127.0.0.1"
    port: int = 8001
    source: str = Field(default="default", description="Name of the standard (HMAC) source")
    webhook_secrets: list[str] = Field(
        default_factory=list,
        description="Active Standard Webhooks secrets; several during rotation",
    )
    webhook_secret: str | None = Field(default=None, description="One secret (TRADING_MCP_WEBHOOK_SECRET)")
    data_dir: Path | None = Field(default=None, description="Reads <data_dir>/webhook_secret when set")
    tolerance_s: int = 300
    max_body_bytes: int = 1024 * 1024
    publish_timeout_s: float = Field(default=1.5, le=1.5)

    @model_validator(mode="after")
    def _collect_secrets(self) -> GatewaySettings:
        found = list(self.webhook_secrets)
        if self.webhook_secret:
            found.append(self.webhook_secret)
        if not found and self.data_dir and (self.data_dir / SECRET_FILE).exists():
            found.append((self.data_dir / SECRET_FILE).read_text().strip())
        if not found:
            raise ValueError(
                "no webhook secret: set TRADING_MCP_WEBHOOK_SECRET or pass --data-dir holding webhook_secret"
            )
        for s in found:
            if s in {"changeme", "secret", "whsec_changeme"} or len(s) < 16:
                raise ValueError("the webhook secret is a placeholder or shorter than 16 characters")
        self.webhook_secrets = found
        return self
