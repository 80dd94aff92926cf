"""The accounts file: missing gives the one default account; wrong is one line naming the file and the key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bus.accounts import AccountsFileError, load_accounts
from schemas.accounts import AccountConfig


def test_without_a_file_there_is_the_one_default_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADING_MCP_ACCOUNTS_FILE", raising=False)
    assert load_accounts(tmp_path, starting_cash=Decimal(5000)).accounts == [
        AccountConfig(id="paper", starting_cash=Decimal(5000))
    ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("accounts = [", "not valid TOML/JSON"),
        ('[[accounts]]\nid = "a b"\n', "accounts.0.id: String should match pattern"),
        ('[[accounts]]\nid = "a"\n[[accounts]]\nid = "a"\n', "account 'a' is listed twice"),
        ('[[accounts]]\nid = "a"\nmood = "bold"\n', "accounts.0.mood: Extra inputs are not permitted"),
    ],
)
def test_a_wrong_file_is_one_line_naming_the_file_and_the_key(tmp_path: Path, body: str, says: str) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(body)
    with pytest.raises(AccountsFileError) as refused:
        load_accounts(tmp_path)
    assert str(refused.value).startswith(f"invalid_accounts_file: {path}: ") and says in str(refused.value)
    assert "\n" not in str(refused.value)


def test_an_unreadable_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(AccountsFileError, match="cannot read it"):
        load_accounts(tmp_path, tmp_path / "missing.toml")
