"""`trading-mcp serve` starts without the backtester's heavy libraries (they load when a backtest runs) and without
the `anthropic` SDK (it loads where an agent runs: it was half of serve's import time)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "tqdm", "matplotlib", "anthropic")


def imported_after(statement: str) -> dict[str, bool]:
    code = f"import json, sys\n{statement}\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
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
