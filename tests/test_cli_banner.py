"""`up`'s banner gives commands that run as printed: the executable's full path (a venv's bin is seldom on
PATH), with the data dir and the gateway port `up` was started with."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import pytest

from cli.main import _banner, build_parser


def test_the_banners_send_signal_command_names_the_executable_and_parses_as_printed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = argparse.Namespace(gateway_port=18001, mcp_port=18002, authority_port=18003, execsim_port=18004)
    _banner(args, tmp_path, "nats://127.0.0.1:4222")
    out = capsys.readouterr().out
    start = out.index("Send a signal:") + len("Send a signal:")
    command = shlex.split(out[start : out.index("\n", out.index("--symbol"))].replace("\\\n", " "))
    exe = Path(sys.executable).parent / "trading-mcp"
    assert command[0] == str(exe) and exe.exists()
    parsed = build_parser().parse_args(command[1:])
    assert parsed.command == "send-signal" and parsed.data_dir == tmp_path
    assert parsed.url == "http://127.0.0.1:18001/webhook" and (parsed.symbol, parsed.quantity) == ("AAPL", "10")
