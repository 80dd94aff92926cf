"""A mistake in sources.toml stops the gateway with one line naming the file, the source, the key and the valid
keys (exit 2, no traceback, no secret echoed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from gateway.sources import SourcesFileError, load_sources_file

EXE = str(Path(sys.executable).parent / "trading-mcp")
SECRET = "a-long-random-token-1234"
VALID = "valid keys: name, mode, secrets, allowed_ips, allowed_symbols, rate_per_s, burst, accounts, symbol_accounts"


def _file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            f'[[sources]]\nname = "tv"\nmode = "tradingview"\nsecret = ["{SECRET}"]\n',
            "source 'tv': missing key 'secrets'; unknown key 'secret' (did you mean 'secrets'?); " + VALID,
        ),
        (
            f'[[sources]]\nname = "bot"\nsecrets = ["{SECRET}"]\nallowed_ip = ["10.0.0.0/8"]\n',
            "source 'bot': unknown key 'allowed_ip' (did you mean 'allowed_ips'?); " + VALID,
        ),
        (
            f'[[sources]]\nname = "bot"\nsecrets = ["{SECRET}"]\nrate_per_s = -1\n',
            "source 'bot': invalid 'rate_per_s': Input should be greater than 0; " + VALID,
        ),
        (f'[[sources]]\nsecrets = ["{SECRET}"]\n', "source #1: missing key 'name'; " + VALID),
        (
            f'[[sources]]\nname = "bot"\nsecrets = ["{SECRET}"]\naccounts = ["momo", "mean rev"]\n',
            "source 'bot': invalid 'accounts': 'mean rev' is not an account id (1-32 letters, digits, '_' or '-'); "
            + VALID,
        ),
        (
            f'[[sources]]\nname = "bot"\nsecrets = ["{SECRET}"]\naccounts = []\n',
            "source 'bot': invalid 'accounts': the list is empty; name at least one account; " + VALID,
        ),
        (
            f'[[sources]]\nname = "bot"\nsecrets = ["{SECRET}"]\naccounts = ["momo", "momo"]\n',
            "source 'bot': invalid 'accounts': 'momo' is listed twice; " + VALID,
        ),
        (
            f'[[sources]]\nname = "bot"\nsecrets = ["{SECRET}"]\naccounts = "momo"\n',
            """source 'bot': invalid 'accounts': expected a list of account ids, like ["paper"]; """ + VALID,
        ),
        (
            f'[[sources]]\nname = "bot"\nsecrets = ["{SECRET}"]\naccount = ["momo"]\n',
            "source 'bot': unknown key 'account' (did you mean 'accounts'?); " + VALID,
        ),
        (
            f'[[sources]]\nname = "bot"\nsecrets = ["{SECRET}"]\nsymbol_accounts = {{ BTCUSD = [] }}\n',
            "source 'bot': invalid 'symbol_accounts': BTCUSD: the list is empty; name at least one account; " + VALID,
        ),
        (
            f'[[sources]]\nname = "bot"\nsecrets = ["{SECRET}"]\nsymbol_accounts = {{ BTCUSD = ["a", "b", "a"] }}\n',
            "source 'bot': invalid 'symbol_accounts': BTCUSD: 'a' is listed twice; " + VALID,
        ),
        (
            f'[[sources]]\nname = "bot"\nsecrets = ["{SECRET}"]\nsymbol_accounts = {{ btcusd = ["momo"] }}\n',
            "source 'bot': invalid 'symbol_accounts': 'btcusd' is neither a symbol a signal can carry nor '*'; "
            + VALID,
        ),
        (
            f'[[sources]]\nname = "bot"\nsecrets = ["{SECRET}"]\nallowed_symbols = ["AAPL"]\n'
            'symbol_accounts = { ETHUSD = ["crypto"] }\n',
            "source 'bot': symbol_accounts routes symbols that allowed_symbols refuses: ['ETHUSD']; " + VALID,
        ),
        (
            f'[[sources]]\nname = "bot"\nsecrets = ["{SECRET}"]\naccounts = ["momo"]\n'
            'symbol_accounts = { "*" = ["meanrev"] }\n',
            """source 'bot': symbol_accounts "*" and accounts both say where other symbols go; keep one; """ + VALID,
        ),
        ('[[sources]\nname = "tv"\n', "not valid TOML"),
    ],
)
def test_a_mistake_in_the_sources_file_is_one_line_naming_the_file_source_and_key(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = _file(tmp_path, body)
    with pytest.raises(SourcesFileError) as refused:
        load_sources_file(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert "\n" not in message and SECRET not in message and refused.value.code == "invalid_sources_file"


def test_a_bad_account_in_a_json_sources_file_is_the_same_one_line(tmp_path: Path) -> None:
    path = tmp_path / "sources.json"
    path.write_text(json.dumps({"sources": [{"name": "bot", "secrets": [SECRET], "accounts": ["momo", "x.y"]}]}))
    with pytest.raises(SourcesFileError) as refused:
        load_sources_file(path)
    assert str(refused.value) == (
        f"{path}: source 'bot': invalid 'accounts': 'x.y' is not an account id (1-32 letters, digits, '_' or '-'); "
        + VALID
    )


def test_gateway_settings_carry_the_same_line(tmp_path: Path) -> None:
    _file(tmp_path, f'[[sources]]\nname = "tv"\nsecret = ["{SECRET}"]\n')
    with pytest.raises(ValidationError, match="unknown key 'secret'"):
        GatewaySettings(nats_url="nats://x:1", data_dir=tmp_path)


def test_the_gateway_exits_2_with_one_line_and_no_traceback_on_a_typo_in_sources_toml(tmp_path: Path) -> None:
    path = _file(tmp_path, f'[[sources]]\nname = "tv"\nmode = "tradingview"\nsecrets = ["{SECRET}"]\nburts = 3\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_MCP_")}
    done = subprocess.run(
        [EXE, "gateway", "--data-dir", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "NATS_URL": "nats://127.0.0.1:1"},
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"trading-mcp gateway: invalid_sources_file: {path}: source 'tv': unknown key 'burts' "
        f"(did you mean 'burst'?); {VALID}"
    ]
    assert "Traceback" not in done.stderr and SECRET not in done.stderr
