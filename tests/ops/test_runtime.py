"""The services' event loop (`observability.runtime`): uvloop by default (a dependency), asyncio's own on request, and a
clear refusal for a name that is no loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from observability import runtime


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_a_service_runs_on_uvloop_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtime.ENV, raising=False)
    assert runtime.loop_name() == "uvloop"
    assert runtime.run(_loop_module()).startswith("uvloop")
    monkeypatch.setenv(runtime.ENV, "asyncio")
    assert runtime.loop_name() == "asyncio"
    assert runtime.run(_loop_module()).startswith("asyncio")
    monkeypatch.setenv(runtime.ENV, " UVLOOP ")
    assert runtime.run(_loop_module()).startswith("uvloop")


def test_a_name_that_is_no_loop_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.ENV, "trio")
    with pytest.raises(runtime.LoopChoiceError, match="auto, uvloop, asyncio"):
        runtime.run(_loop_module())


def test_uvloop_asked_for_but_missing_is_refused_and_auto_falls_back() -> None:
    """A machine without uvloop (Windows, a trimmed install): `auto` runs asyncio's loop, `uvloop` says why not."""
    code = (
        "import sys; sys.modules['uvloop'] = None\n"  # import uvloop now raises ImportError
        "from observability import runtime\n"
        "assert runtime.loop_name({}) == 'asyncio'\n"
        "try:\n"
        "    runtime.loop_name({'TRADING_MCP_EVENT_LOOP': 'uvloop'})\n"
        "except runtime.LoopChoiceError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert "uvloop is not installed" in out.stdout and "pip install uvloop" in out.stdout
