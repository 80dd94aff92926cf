"""The operator path: `trading-mcp risk` writes a signed record to JetStream KV; the gate applies it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bus.embedded import EmbeddedNats
from mcp_server.risk_control import TOKEN_FILE, ControlFollower, write_signed
from tools.risk import RiskGate, RiskLimits, TradingState
from tools.risk_control import RiskControl, sign

EXE = str(Path(sys.executable).parent / "trading-mcp")


async def _risk(nats: EmbeddedNats, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NATS_URL": nats.url}
    return await asyncio.to_thread(
        subprocess.run,
        [EXE, "risk", *args, "--data-dir", str(data_dir), "--operator", "ops-alice"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_operator_halts_changes_limits_and_resumes_through_the_signed_record(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    configured = RiskLimits(max_position=Decimal(100))
    gate = RiskGate(configured)
    halted = await _risk(nats_server, tmp_path, "halt", "--reason", "incident")
    assert halted.returncode == 0, halted.stderr
    token = (tmp_path / TOKEN_FILE).read_text().strip()
    assert oct((tmp_path / TOKEN_FILE).stat().st_mode & 0o777) == "0o600"
    follower = ControlFollower(js, gate, token, configured)
    await follower.refresh()
    assert gate.state is TradingState.HALTED and gate.state_reason == "incident"
    assert not gate.check(symbol="AAPL", side="buy", quantity=Decimal(1), projected_position=Decimal(0)).approved

    changed = await _risk(nats_server, tmp_path, "set", "--set", "max_position=5", "--set", "mcp_may_loosen=true")
    assert changed.returncode == 0, changed.stderr
    await follower.refresh()
    assert gate.limits.max_position == Decimal(5) and gate.limits.mcp_may_loosen
    assert gate.state is TradingState.HALTED, "a limit change keeps the operator's last state"
    assert gate.changes[-1].actor == "operator" and "max_position" in gate.changes[-1].fields

    resumed = await _risk(nats_server, tmp_path, "resume")
    assert resumed.returncode == 0, resumed.stderr
    await follower.refresh()
    assert gate.state is TradingState.ACTIVE and gate.limits.max_position == Decimal(5)

    shown = await _risk(nats_server, tmp_path, "show")
    assert '"revision": 3' in shown.stdout and '"operator": "ops-alice"' in shown.stdout


async def test_a_record_signed_with_another_token_is_refused_and_changes_nothing(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    gate = RiskGate(RiskLimits(max_position=Decimal(100)))
    forged = RiskControl(
        revision=99,
        limits_patch={"max_position": 1_000_000},
        state=TradingState.ACTIVE,
        issued_at=datetime.now(UTC),
    )
    await write_signed(js, sign(forged, "not-the-operator-token"))
    follower = ControlFollower(js, gate, "the-operator-token", gate.limits)
    assert await follower.refresh() is None
    assert gate.limits.max_position == Decimal(100) and gate.changes == []


async def test_a_bad_limit_value_is_refused_by_the_cli_before_anything_is_written(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    bad = await _risk(nats_server, tmp_path, "set", "--set", "max_position=-1")
    unknown = await _risk(nats_server, tmp_path, "set", "--set", "max_positions=5")
    assert bad.returncode == 2 and "invalid limits" in bad.stderr
    assert unknown.returncode == 2 and "expected FIELD=VALUE" in unknown.stderr
    follower = ControlFollower(js, RiskGate(), "whatever", RiskLimits())
    assert await follower.refresh() is None
