"""Read the accounts file (schemas/accounts.py): `<data dir>/accounts.toml` or TRADING_MCP_ACCOUNTS_FILE.

A file that is missing gives the one default account; a file that is wrong is one clear line
(`invalid_accounts_file: <file>: <where>: <what>`), never a traceback and never half a configuration.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from bus.config_file import read_toml_or_json
from schemas.accounts import AccountsFile, single
from schemas.risk import PAPER_STARTING_CASH

FILE_NAME = "accounts.toml"
ENV = "TRADING_MCP_ACCOUNTS_FILE"


class AccountsFileError(ValueError):
    code = "invalid_accounts_file"


def accounts_path(data_dir: Path, explicit: Path | None = None) -> Path | None:
    """The accounts file in force: `explicit`, else TRADING_MCP_ACCOUNTS_FILE, else `<data dir>/accounts.toml`
    if it exists, else None (one default account)."""
    if explicit is not None:
        return explicit
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    default = data_dir / FILE_NAME
    return default if default.exists() else None


def load_accounts(
    data_dir: Path, explicit: Path | None = None, starting_cash: Decimal = PAPER_STARTING_CASH
) -> AccountsFile:
    path = accounts_path(data_dir, explicit)
    if path is None:
        return single(starting_cash)
    raw = read_toml_or_json(path, AccountsFileError.code, AccountsFileError)
    try:
        return AccountsFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "file"
        raise AccountsFileError(f"{AccountsFileError.code}: {path}: {where}: {first.get('msg')}") from None
