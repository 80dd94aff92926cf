"""Gateway configuration: one Settings per process, validated at start-up.

Sources come from, in this order (names must be unique):
1. `TRADING_MCP_SOURCES_FILE` (TOML or JSON), else `<data_dir>/sources.toml` when it exists;
2. `TRADING_MCP_SOURCES`: a JSON list of source objects;
3. the single-secret shortcut: `TRADING_MCP_WEBHOOK_SECRET(S)` or `<data_dir>/webhook_secret` make the
   standard source named `source` ("default"), which answers POST /webhook; its signals feed the accounts in
   `TRADING_MCP_SOURCE_ACCOUNTS` (`momo,meanrev` or a JSON list; default `paper`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bus.jetstream import DUPLICATE_WINDOW_S
from gateway.sources import (
    IpNetwork,
    SourceConfig,
    check_secret,
    load_sources_file,
    parse_accounts,
    parse_networks,
)

SECRET_FILE = "webhook_secret"
SOURCES_FILE = "sources.toml"


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADING_MCP_", extra="ignore")

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    host: str = "127.0.0.1"
    port: int = 8001
    source: str = Field(default="default", description="Name of the standard (HMAC) source behind POST /webhook")
    webhook_secrets: list[str] = Field(
        default_factory=list,
        repr=False,
        description="Active Standard Webhooks secrets of the default source; several during rotation",
    )
    webhook_secret: str | None = Field(default=None, repr=False, description="One secret (TRADING_MCP_WEBHOOK_SECRET)")
    source_accounts: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        default=None,
        description="Accounts the single-secret source's signals feed (TRADING_MCP_SOURCE_ACCOUNTS=momo,meanrev); "
        "default paper",
    )
    data_dir: Path | None = Field(default=None, description="Reads <data_dir>/webhook_secret and sources.toml")
    sources: list[SourceConfig] = Field(default_factory=list, description="TRADING_MCP_SOURCES (JSON list)")
    sources_file: Path | None = Field(default=None, description="TRADING_MCP_SOURCES_FILE (TOML or JSON)")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="CIDRs of reverse proxies whose X-Forwarded-For is believed"
    )
    tolerance_s: int = Field(default=300, gt=0, le=int(DUPLICATE_WINDOW_S // 2))
    idempotency_ttl_s: int = Field(default=24 * 3600, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    publish_timeout_s: float = Field(default=1.5, gt=0, le=1.5)
    retry_after_s: int = Field(default=2, ge=1, description="Retry-After sent with 503")
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Deadline for a request's line and headers, from the connection (or the "
        "previous response); then 408 request_timeout (or a silent close if nothing arrived)",
    )
    body_timeout_s: float = Field(
        default=15.0, gt=0, description="Deadline for a request's body, from the end of its headers; then 408"
    )
    max_inflight_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        gt=0,
        description="Request-body bytes held at once across requests (announced Content-Length counts at once); "
        "beyond it 503 overloaded",
    )
    keep_alive_s: int = Field(default=5, ge=1, description="Idle time before a keep-alive connection is closed")
    max_signal_backlog: int = Field(
        default=1000,
        ge=0,
        description="While the slowest live reader of the signal stream is more than this many signals behind, "
        "new signals get 503 pipeline_behind instead of being stored to go stale (gateway.backlog); 0 turns it off",
    )
    max_signal_wait_s: float = Field(
        default=2.0,
        ge=0,
        description="While a signal accepted now would wait longer than this for a live reader of the signal stream "
        "(its backlog over the rate it acknowledges at), new signals get 503 pipeline_behind (gateway.backlog); "
        "keep it well under the authority's signal-age limit (5 s); 0 turns it off",
    )

    _by_name: dict[str, SourceConfig] = PrivateAttr(default_factory=dict)

    @field_validator("source_accounts", mode="before")
    @classmethod
    def _source_accounts(cls, v: Any) -> tuple[str, ...] | None:
        if v is None:
            return None
        if isinstance(v, str):
            try:
                v = json.loads(v) if v.lstrip().startswith("[") else [a.strip() for a in v.split(",") if a.strip()]
            except json.JSONDecodeError:
                raise ValueError("TRADING_MCP_SOURCE_ACCOUNTS: not a JSON list; write momo,meanrev") from None
        try:
            return parse_accounts(v)
        except ValueError as e:
            raise ValueError(f"TRADING_MCP_SOURCE_ACCOUNTS: {e}") from None

    @model_validator(mode="after")
    def _collect_sources(self) -> GatewaySettings:
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError("max_inflight_body_bytes must be at least max_body_bytes, or no full-size body fits")
        found = list(self.webhook_secrets)
        if self.webhook_secret:
            found.append(self.webhook_secret)
        if not found and self.data_dir and (self.data_dir / SECRET_FILE).exists():
            found.append((self.data_dir / SECRET_FILE).read_text().strip())
        for s in found:
            check_secret(s)
        self.webhook_secrets = found

        from_file: list[SourceConfig] = []
        path = self.sources_file
        if path is None and self.data_dir and (self.data_dir / SOURCES_FILE).exists():
            path = self.data_dir / SOURCES_FILE
        if path is not None:
            from_file, proxies = load_sources_file(path)
            self.trusted_proxies = [*self.trusted_proxies, *proxies]
        sources = [*from_file, *self.sources]
        shortcut = bool(found) and all(s.name != self.source for s in sources)
        if shortcut:
            shortcut_source = SourceConfig(name=self.source, mode="standard", secrets=tuple(found))
            if self.source_accounts is not None:
                shortcut_source = shortcut_source.model_copy(update={"accounts": self.source_accounts})
            sources.append(shortcut_source)
        elif self.source_accounts is not None:
            raise ValueError(
                f"TRADING_MCP_SOURCE_ACCOUNTS routes the single-secret source {self.source!r}, which is not in use "
                "here (no webhook secret, or a source of that name is configured): give that source `accounts` "
                "in the sources file instead"
            )
        if not sources:
            raise ValueError(
                "no webhook source: set TRADING_MCP_WEBHOOK_SECRET, TRADING_MCP_SOURCES(_FILE), "
                "or pass --data-dir holding webhook_secret"
            )
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique; repeated: {duplicates}")
        self.sources = sources
        self._by_name = {s.name: s for s in sources}
        parse_networks(self.trusted_proxies)
        return self

    def source_named(self, name: str) -> SourceConfig | None:
        return self._by_name.get(name)

    @property
    def proxy_networks(self) -> tuple[IpNetwork, ...]:
        return parse_networks(self.trusted_proxies)
