"""A mistake in sources.toml stops the gateway with one line naming the file, the source, the key and the valid
keys (exit 2, no traceback, no secret echoed)."""

from __future__ import annotations

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
VALID = "valid keys: name, mode, secrets, allowed_ips, allowed_symbols, rate_per_s, burst"


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
