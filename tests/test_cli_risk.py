"""`trading-mcp risk show` on an account nobody has set limits on: what is in force, and that no operator
record exists yet (not a bare `null`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bus.embedded import EmbeddedNats

EXE = str(Path(sys.executable).parent / "trading-mcp")


def test_risk_show_without_an_operator_record_says_so_and_prints_the_limits_in_force(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_MCP_")}
    done = subprocess.run(
        [EXE, "risk", "show", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "NATS_URL": nats_server.url},
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert "operator_record" not in shown
    assert shown["trading_state"] == "ACTIVE" and shown["limits"]["max_order_notional"] == "100000"
    assert done.stderr.startswith("no operator record yet")
    assert "trading-mcp risk set --set FIELD=VALUE" in done.stderr
