"""`trading-mcp serve` starts without the backtester's heavy libraries (they load when a backtest runs) and without
the `anthropic` SDK (it loads where an agent runs: it was half of serve's import time). A stdio server with the
default toolsets and no decision mode also starts without numpy (strategies, indicators), the decision modes, and the
HTTP side (tokens file, JWT, the Starlette app): cold start to the first tools/list (bench/cold_start.py)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "tqdm", "matplotlib", "anthropic")


def imported_after(statement: str, modules: tuple[str, ...] = HEAVY) -> dict[str, bool]:
    code = f"import json, sys\n{statement}\nprint(json.dumps({{m: m in sys.modules for m in {modules!r}}}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_serve_path_imports_neither_pandas_nor_tqdm_nor_matplotlib_nor_anthropic() -> None:
    serve_path = "cli.main, cli.serve, mcp_server.service, mcp_server.server, mcp_server.backtest_runs"
    loaded = imported_after(f"import {serve_path}")
    assert loaded == dict.fromkeys(HEAVY, False)


def test_the_live_bridge_uses_the_backtester_sizing_without_pandas() -> None:
    loaded = imported_after("import decisions.strategy_mode, execsim.backtest.runner, execsim.backtest")
    assert not loaded["pandas"]


def test_loading_data_for_a_backtest_still_brings_pandas_in() -> None:
    loaded = imported_after("from execsim.backtest import load_bundled\nload_bundled('AAPL')")
    assert loaded["pandas"]


NOT_BEFORE_FIRST_ANSWER = (
    "numpy",
    "strategies",
    "execsim.backtest",
    "decisions.service",
    "decisions.strategy_mode",
    "decisions.agent.service",
    "mcp_server.toolsets.strategies",
    "mcp_server.credentials_map",
    "mcp_server.transports",
    "jwt",
)


def test_a_default_stdio_server_imports_no_numpy_no_decision_mode_and_no_http_side() -> None:
    statement = (
        "import cli.main, cli.serve, mcp_server.service, mcp_server.server\n"
        "from mcp_server import toolsets\n"
        "toolsets.select(None, read_only=False)\n"
        "toolsets.select(None, read_only=True)"
    )
    loaded = imported_after(statement, NOT_BEFORE_FIRST_ANSWER)
    assert loaded == dict.fromkeys(NOT_BEFORE_FIRST_ANSWER, False)


def test_every_toolset_is_named_for_its_module_so_select_imports_only_the_chosen_ones() -> None:
    from mcp_server import toolsets

    assert {name: toolsets.load(name).name for name in toolsets._MODULES} == {n: n for n in toolsets._MODULES}
