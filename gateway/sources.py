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
    accounts = ["momo", "meanrev"]            # optional; the accounts its signals feed (default ["paper"])
    symbol_accounts = { BTCUSD = ["crypto"] } # optional; per symbol, instead of `accounts` ("*": any other)

    [[sources]]
    name = "scripts"                          # mode "standard": Standard Webhooks HMAC
    secrets = ["whsec_...new", "whsec_...old"]   # several during a key rotation

Routing: a signal for symbol S feeds `symbol_accounts[S]`, else `symbol_accounts["*"]`, else `accounts`; the
gateway stores it once, with that list in its `accounts`, and every account listed decides on it on its own.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.common import ACCOUNT_PATTERN, DEFAULT_ACCOUNT
from schemas.signals import SYMBOL_PATTERN

# The addresses TradingView sends webhooks from (its documentation, 2024-2026).
TRADINGVIEW_IPS: tuple[str, ...] = ("52.89.214.238/32", "34.212.75.30/32", "54.218.53.128/32", "52.32.178.7/32")
IP_PRESETS: dict[str, tuple[str, ...]] = {"tradingview": TRADINGVIEW_IPS}

PLACEHOLDER_SECRETS = {"changeme", "secret", "whsec_changeme", "password"}
MIN_SECRET_LENGTH = 16

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ANY_SYMBOL = "*"
MAX_ACCOUNTS = 32  # NormalizedSignal.accounts holds at most this many


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


def parse_accounts(value: Any, where: str = "") -> tuple[str, ...]:
    """A routing list: 1 to MAX_ACCOUNTS distinct account ids (ACCOUNT_PATTERN), in the sender's order. Errors
    name the bad value (account ids are not secrets); `where` prefixes them (`BTCUSD: `)."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f'{where}expected a list of account ids, like ["{DEFAULT_ACCOUNT}"]')
    if not value:
        raise ValueError(f"{where}the list is empty; name at least one account")
    if len(value) > MAX_ACCOUNTS:
        raise ValueError(f"{where}{len(value)} accounts; at most {MAX_ACCOUNTS}")
    seen: set[str] = set()
    for account in value:
        if not isinstance(account, str) or not re.match(ACCOUNT_PATTERN, account):
            raise ValueError(f"{where}{account!r} is not an account id (1-32 letters, digits, '_' or '-')")
        if account in seen:
            raise ValueError(f"{where}{account!r} is listed twice")
        seen.add(account)
    return tuple(value)


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
    accounts: tuple[str, ...] = Field(
        default=(DEFAULT_ACCOUNT,), description="The accounts this source's signals feed, unless symbol_accounts"
    )
    symbol_accounts: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description='Per symbol (or "*": any other symbol), the accounts instead of accounts'
    )

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

    @field_validator("accounts", mode="before")
    @classmethod
    def _accounts(cls, v: Any) -> tuple[str, ...]:
        return parse_accounts(v)

    @field_validator("symbol_accounts", mode="before")
    @classmethod
    def _symbol_accounts(cls, v: Any) -> dict[str, tuple[str, ...]]:
        if not isinstance(v, dict):
            raise ValueError('expected a table of symbol = [accounts], like { BTCUSD = ["momo"] }')
        for symbol in v:
            if symbol != ANY_SYMBOL and not (isinstance(symbol, str) and re.match(SYMBOL_PATTERN, symbol)):
                raise ValueError(f"{symbol!r} is neither a symbol a signal can carry nor {ANY_SYMBOL!r}")
        return {symbol: parse_accounts(accounts, f"{symbol}: ") for symbol, accounts in v.items()}

    @model_validator(mode="after")
    def _routing_reachable(self) -> SourceConfig:
        if ANY_SYMBOL in self.symbol_accounts and "accounts" in self.model_fields_set:
            raise ValueError(f'symbol_accounts "{ANY_SYMBOL}" and accounts both say where other symbols go; keep one')
        if self.allowed_symbols is not None:
            refused = sorted(s for s in self.symbol_accounts if s != ANY_SYMBOL and s not in self.allowed_symbols)
            if refused:
                raise ValueError(f"symbol_accounts routes symbols that allowed_symbols refuses: {refused}")
        return self

    def accounts_for(self, symbol: str) -> list[str]:
        """The accounts a signal for `symbol` feeds: symbol_accounts[symbol], else ["*"], else accounts."""
        routed = self.symbol_accounts.get(symbol) or self.symbol_accounts.get(ANY_SYMBOL) or self.accounts
        return list(routed)

    @property
    def networks(self) -> tuple[IpNetwork, ...]:
        return parse_networks(list(self.allowed_ips))

    def __repr__(self) -> str:  # never print secrets
        return f"SourceConfig(name={self.name!r}, mode={self.mode!r}, secrets=[{len(self.secrets)} hidden])"

    __str__ = __repr__


class SourcesFileError(ValueError):
    """A sources file that cannot be used: one line naming the file, the source, the key and the valid keys."""

    code = "invalid_sources_file"


def read_sources_file(path: Path) -> dict[str, Any]:
    """`{"sources": [...], "trusted_proxies": [...]}` from a .toml or .json file."""
    try:
        text = path.read_text()
    except OSError as e:
        raise SourcesFileError(f"{path}: cannot read the sources file ({e.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise SourcesFileError(f"{path}: not valid {kind}: {e}") from None
    if not isinstance(data, dict):
        raise SourcesFileError(f"{path}: expected a table with sources and trusted_proxies")
    unknown = set(data) - {"sources", "trusted_proxies"}
    if unknown:
        raise SourcesFileError(f"{path}: unknown top-level keys {sorted(unknown)} (expected sources, trusted_proxies)")
    if not isinstance(data.get("sources", []), list):
        raise SourcesFileError(f"{path}: `sources` must be a list of tables ([[sources]] in TOML)")
    return data


def load_sources_file(path: Path) -> tuple[list[SourceConfig], list[str]]:
    """The sources and trusted proxies of a sources file; any mistake is one `SourcesFileError` line that
    never repeats a value (a value may be a secret)."""
    data = read_sources_file(path)
    sources = []
    for i, raw in enumerate(data.get("sources", []), 1):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = f"source {name!r}" if isinstance(name, str) else f"source #{i}"
        try:
            sources.append(SourceConfig.model_validate(raw))
        except ValidationError as e:
            raise SourcesFileError(f"{path}: {label}: {_problems(e)}; valid keys: {', '.join(VALID_KEYS)}") from None
    return sources, list(data.get("trusted_proxies", []))


VALID_KEYS = tuple(SourceConfig.model_fields)


def _problems(e: ValidationError) -> str:
    out = []
    for err in e.errors(include_input=False, include_url=False):
        key = ".".join(str(p) for p in err["loc"]) or "the source"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][0]), VALID_KEYS, n=1)
            out.append(f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        elif err["type"] == "missing":
            out.append(f"missing key {key!r}")
        elif err["type"] == "model_type":
            out.append("is not a table")
        elif not err["loc"]:  # a rule across keys (routing): its message names them
            out.append(err["msg"].removeprefix("Value error, "))
        else:
            out.append(f"invalid {key!r}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(out)
