"""Who may send signals: one `SourceConfig` per sender, from a TOML/JSON file and/or the environment.

A sources file (TOML, or JSON with the same shape):

    trusted_proxies = ["10.0.0.0/8"]          # optional; X-Forwarded-For is read only from these

    [[sources]]
    name = "tradingview"
    mode = "tradingview"                      # secret in the JSON body
    secrets = ["a-long-random-token-1234"]
    allowed_ips = ["tradingview"]             # the preset below, or CIDR ranges
    allowed_symbols = ["AAPL", "BTCUSD"]      # optional
    rate_per_s = 5                            # optional token bucket
    burst = 10

    [[sources]]
    name = "scripts"                          # mode "standard": Standard Webhooks HMAC
    secrets = ["whsec_...new", "whsec_...old"]   # several during a key rotation
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.signals import SYMBOL_PATTERN

# The addresses TradingView sends webhooks from (its documentation, 2024-2026).
TRADINGVIEW_IPS: tuple[str, ...] = ("52.89.214.238/32", "34.212.75.30/32", "54.218.53.128/32", "52.32.178.7/32")
IP_PRESETS: dict[str, tuple[str, ...]] = {"tradingview": TRADINGVIEW_IPS}

PLACEHOLDER_SECRETS = {"changeme", "secret", "whsec_changeme", "password"}
MIN_SECRET_LENGTH = 16

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_secret(secret: str) -> str:
    if secret in PLACEHOLDER_SECRETS or len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"a secret is a placeholder or shorter than {MIN_SECRET_LENGTH} characters")
    return secret


def parse_networks(entries: list[str]) -> tuple[IpNetwork, ...]:
    """CIDR ranges or single addresses; preset names (`tradingview`) expand to their addresses."""
    networks: list[IpNetwork] = []
    for entry in entries:
        for item in IP_PRESETS.get(entry.strip().lower(), (entry,)):
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is neither a CIDR range, an IP address nor a preset") from None
    return tuple(networks)


class SourceConfig(BaseModel):
    """One sender: its name (the `source` of its signals), how it authenticates, and its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Path segment in /webhook/{name}")
    mode: Literal["standard", "tradingview"] = "standard"
    secrets: tuple[str, ...] = Field(min_length=1, description="All active secrets; any one authenticates")
    allowed_ips: tuple[str, ...] = Field(default=(), description="CIDRs or `tradingview`; empty: any address")
    allowed_symbols: frozenset[str] | None = Field(default=None, description="None: any symbol")
    rate_per_s: float | None = Field(default=None, gt=0, description="Token refill rate; None: unlimited")
    burst: int | None = Field(default=None, ge=1, description="Bucket size; default max(1, rate_per_s)")

    @field_validator("secrets")
    @classmethod
    def _strong(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_secret(s) for s in v)

    @field_validator("allowed_ips")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        parse_networks(list(v))
        return v

    @field_validator("allowed_symbols")
    @classmethod
    def _symbols(cls, v: frozenset[str] | None) -> frozenset[str] | None:
        if v is None:
            return None
        bad = sorted(s for s in v if not re.match(SYMBOL_PATTERN, s))
        if bad:
            raise ValueError(f"allowed_symbols holds symbols that can never match: {bad}")
        return v

    @property
    def networks(self) -> tuple[IpNetwork, ...]:
        return parse_networks(list(self.allowed_ips))

    def __repr__(self) -> str:  # never print secrets
        return f"SourceConfig(name={self.name!r}, mode={self.mode!r}, secrets=[{len(self.secrets)} hidden])"

    __str__ = __repr__


def read_sources_file(path: Path) -> dict[str, Any]:
    """`{"sources": [...], "trusted_proxies": [...]}` from a .toml or .json file."""
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    unknown = set(data) - {"sources", "trusted_proxies"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)} (expected sources, trusted_proxies)")
    return data
