"""Which accounts an HTTP credential acts on and holds: the static tokens file, the single token, the OAuth claim.

The tokens file (TRADING_MCP_AUTH_TOKENS_FILE, TOML or JSON):

    [[tokens]]
    name = "momo-desk"                   # shown in logs and as the principal; default tokens[<n>]
    token_sha256 = "9f86d081884c7d65..." # hex sha256 of the token (preferred); or token = "..." (24+ characters)
    accounts = ["momo", "meanrev"]       # acts on the first; holds (may see) all of them
    scopes = ["trading:read"]            # optional: without it, every scope

A token is matched by comparing sha256 digests with `hmac.compare_digest`, against every entry. A file that is
wrong is one clear line (`invalid_tokens_file: <file>: <entry>: <what>`) and never shows a token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bus.config_file import read_toml_or_json
from mcp_server.auth import SCOPES_SUPPORTED, STATIC_TOKEN_PRINCIPAL, Principal
from mcp_server.settings import MIN_TOKEN_CHARS, ConfigError
from schemas.common import ACCOUNT_PATTERN

TOKENS_FILE_ENV = "TRADING_MCP_AUTH_TOKENS_FILE"


class TokensFileError(ConfigError):
    code = "invalid_tokens_file"


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str | None = Field(default=None, min_length=1, max_length=64)
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    token: str | None = Field(default=None, min_length=MIN_TOKEN_CHARS)
    accounts: list[str] = Field(min_length=1, max_length=256)
    scopes: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> TokenEntry:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of token_sha256 (preferred) and token")
        for account in self.accounts:
            if not re.fullmatch(ACCOUNT_PATTERN, account):
                raise ValueError(f"account {account[:40]!r} is not an account id ({ACCOUNT_PATTERN})")
        if len(set(self.accounts)) != len(self.accounts):
            raise ValueError("an account is listed twice")
        unknown = sorted(set(self.scopes or ()) - set(SCOPES_SUPPORTED))
        if unknown:
            raise ValueError(f"unknown scopes {unknown} (known: {', '.join(SCOPES_SUPPORTED)})")
        return self

    def digest(self) -> bytes:
        if self.token_sha256 is not None:
            return bytes.fromhex(self.token_sha256)
        assert self.token is not None
        return hashlib.sha256(self.token.encode()).digest()


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    tokens: list[TokenEntry] = Field(min_length=1, max_length=1024)


@dataclass(frozen=True)
class Credential:
    """One accepted static token: the sha256 of it and the principal it authenticates as."""

    digest: bytes
    principal: Principal


class StaticCredentials:
    """The static bearer tokens: `match` turns an `Authorization` header into its principal, or None."""

    def __init__(self, credentials: Iterable[Credential]) -> None:
        self.credentials = tuple(credentials)

    def __bool__(self) -> bool:
        return bool(self.credentials)

    def match(self, authorization: bytes) -> Principal | None:
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        given = hashlib.sha256(token.strip()).digest()
        found = None
        for credential in self.credentials:  # every entry is compared, whichever matches
            if hmac.compare_digest(given, credential.digest) and found is None:
                found = credential.principal
        return found

    def accounts(self) -> set[str]:
        """Every account some static token holds."""
        return {a for c in self.credentials for a in c.principal.accounts}


def single_token(token: str, account: str) -> Credential:
    """TRADING_MCP_AUTH_TOKEN: acts on and holds the server's account (`--account`), every scope."""
    return Credential(hashlib.sha256(token.encode()).digest(), Principal(STATIC_TOKEN_PRINCIPAL, None, (account,)))


def load_tokens_file(path: Path) -> list[Credential]:
    """The entries of the tokens file as credentials; TokensFileError (naming the file and entry) if it is wrong."""
    code = TokensFileError.code
    raw = read_toml_or_json(path, code, TokensFileError)
    try:
        parsed = TokensFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TokensFileError(f"{code}: {path}: {_where(raw, first.get('loc', ()))}: {first.get('msg')}") from None
    credentials: list[Credential] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for n, entry in enumerate(parsed.tokens):
        name = entry.name or f"tokens[{n}]"
        if name in names:
            raise TokensFileError(f"{code}: {path}: tokens[{n}] ({name}): the name is used twice")
        if entry.digest() in digests:
            raise TokensFileError(f"{code}: {path}: tokens[{n}] ({name}): the same token is listed twice")
        names.add(name)
        digests.add(entry.digest())
        scopes = frozenset(entry.scopes) if entry.scopes is not None else None
        credentials.append(Credential(entry.digest(), Principal(name, scopes, tuple(entry.accounts))))
    return credentials


def _where(raw: Any, loc: tuple[Any, ...]) -> str:
    """`tokens[1] (momo-desk).accounts` for an error's location: the entry by index and name (errors are built with
    `hide_input_in_errors`, so no value, and no token, is ever quoted)."""
    if len(loc) >= 2 and loc[0] == "tokens" and isinstance(loc[1], int):
        entry = raw.get("tokens", [])[loc[1]] if isinstance(raw, Mapping) else None
        name = entry.get("name") if isinstance(entry, Mapping) else None
        where = f"tokens[{loc[1]}]" + (f" ({str(name)[:64]})" if isinstance(name, str) else "")
        return ".".join([where, *(str(p) for p in loc[2:])])
    return ".".join(str(p) for p in loc) or "file"


def accounts_claim(claims: Mapping[str, Any], claim: str) -> tuple[str, ...]:
    """The accounts a JWT names in `claim` (a list, or a space-separated string), in order, valid ids only."""
    raw = claims.get(claim)
    values = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    found: list[str] = []
    for value in values:
        if isinstance(value, str) and re.fullmatch(ACCOUNT_PATTERN, value) and value not in found:
            found.append(value)
    return tuple(found)


def verified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT that `oauth_tokens.TokenValidator` has just verified (signature, iss, aud, times): read
    again here without repeating the checks."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return claims if isinstance(claims, dict) else {}
