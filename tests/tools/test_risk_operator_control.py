"""The operator path: `trading-mcp risk` writes a signed record to JetStream KV; the account authority applies it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from authority.control import TOKEN_FILE, bucket, load_or_create_token, read_signed, write_signed
from authority.service import Authority
from bus.embedded import EmbeddedNats
from bus.journal import ensure_journal
from schemas.account import OrderCommand
from tests.conftest import wait_for
from tools.risk import RiskLimits, TradingState
from tools.risk_control import RiskControl, sign, verify

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


@contextlib.asynccontextmanager
async def authority(js, data_dir: Path, limits: RiskLimits) -> AsyncIterator[Authority]:  # type: ignore[no-untyped-def]
    await ensure_journal(js)
    token = load_or_create_token(data_dir / TOKEN_FILE)
    auth = Authority(js._nc, js, key=b"k", limits=limits, operator_token=token)
    await auth.start()
    stop = asyncio.Event()
    tasks = auth.tasks(stop)
    try:
        yield auth
    finally:
        stop.set()
        await auth.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


async def write_forged(js, state: TradingState) -> None:  # type: ignore[no-untyped-def]
    """A record signed with another token: revision 99, the position limit loosened, `state`."""
    forged = RiskControl(
        revision=99, limits_patch={"max_position": 1_000_000}, state=state, issued_at=datetime.now(UTC)
    )
    await write_signed(js, sign(forged, "not-the-operator-token"))


BUY = OrderCommand(
    kind="check", symbol="AAPL", side="buy", quantity=Decimal(1), limit_price=Decimal(10), order_type="limit"
)


async def test_the_operator_halts_changes_limits_and_resumes_through_the_signed_record(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    async with authority(js, tmp_path, RiskLimits(max_position=Decimal(100))) as auth:
        gate = auth.account.gate
        halted = await _risk(nats_server, tmp_path, "halt", "--reason", "incident")
        assert halted.returncode == 0, halted.stderr
        assert "applied by the order authority: trading state HALTED" in halted.stderr
        assert oct((tmp_path / TOKEN_FILE).stat().st_mode & 0o777) == "0o600"
        assert gate.state is TradingState.HALTED and gate.state_reason == "incident"
        assert (await auth.handle(BUY)).code == "trading_halted"

        changed = await _risk(nats_server, tmp_path, "set", "--set", "max_position=5", "--set", "mcp_may_loosen=true")
        assert changed.returncode == 0, changed.stderr
        await wait_for(lambda: gate.limits.max_position == Decimal(5), 10, "the new limit")
        assert gate.limits.mcp_may_loosen
        assert gate.state is TradingState.HALTED, "a limit change keeps the operator's last state"

        resumed = await _risk(nats_server, tmp_path, "resume")
        assert resumed.returncode == 0, resumed.stderr
        assert gate.state is TradingState.ACTIVE and gate.limits.max_position == Decimal(5)
        assert (await auth.handle(BUY)).ok

        shown = await _risk(nats_server, tmp_path, "show")
        forged = RiskControl(revision=4, limits_patch={}, state=TradingState.ACTIVE, issued_at=datetime.now(UTC))
        await write_signed(js, sign(forged, "not-the-operator-token"))
        await auth._apply_control(await read_signed(js))  # what its housekeeping does every half second
        assert gate.limits.max_position == Decimal(5), "a forged record does not even restore the configured limits"
    assert '"revision": 3' in shown.stdout and '"operator": "ops-alice"' in shown.stdout
    assert '"trading_state": "ACTIVE"' in shown.stdout and '"max_position": "5"' in shown.stdout


async def test_risk_show_before_the_authority_ever_ran_prints_the_limits_it_will_start_with(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    shown = await _risk(nats_server, tmp_path, "show")
    assert shown.returncode == 0, shown.stderr
    assert "has not run on this data dir yet" in shown.stdout
    for limit in ("max_order_notional", "max_gross_exposure", "daily_loss_limit", "max_drawdown"):
        assert f'"{limit}": null' not in shown.stdout, f"{limit} is on by default"


async def test_a_record_signed_with_another_token_is_refused_and_changes_nothing(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    await write_forged(js, TradingState.HALTED)
    async with authority(js, tmp_path, RiskLimits(max_position=Decimal(100))) as auth:
        assert auth.account.gate.limits.max_position == Decimal(100)
        assert auth.account.gate.state is TradingState.ACTIVE and auth.account.control_revision == 0


async def test_a_bad_limit_value_is_refused_by_the_cli_before_anything_is_written(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    bad = await _risk(nats_server, tmp_path, "set", "--set", "max_position=-1")
    unknown = await _risk(nats_server, tmp_path, "set", "--set", "max_positions=5")
    assert bad.returncode == 2 and "invalid limits" in bad.stderr
    assert unknown.returncode == 2 and "expected FIELD=VALUE" in unknown.stderr
    assert await read_signed(js) is None


async def test_a_malformed_record_is_refused_and_changes_nothing_and_the_operator_can_still_halt(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    """Garbage in the operator's key (anyone with the bucket's credentials but not the token can write it) is a
    refused record, like a forged one: the authority starts on its configured limits instead of failing to start,
    `risk show` says why, and `risk halt` writes a good record over it."""
    kv = await bucket(js)
    await kv.put("control", b"{not a signed record")
    async with authority(js, tmp_path, RiskLimits(max_position=Decimal(100))) as auth:
        gate = auth.account.gate
        assert gate.limits.max_position == Decimal(100) and gate.state is TradingState.ACTIVE
        shown = await _risk(nats_server, tmp_path, "show")
        assert shown.returncode == 0 and "refused (malformed_record)" in shown.stderr, shown.stderr
        assert '"trading_state": "ACTIVE"' in shown.stdout
        halted = await _risk(nats_server, tmp_path, "halt", "--reason", "garbage in KV")
        assert halted.returncode == 0, halted.stderr
        assert "applied by the order authority: trading state HALTED" in halted.stderr
        assert gate.state is TradingState.HALTED and gate.limits.max_position == Decimal(100)
    stored = await read_signed(js)
    assert stored is not None and verify(stored, load_or_create_token(tmp_path / TOKEN_FILE)).revision == 1


async def test_a_halt_written_over_a_forged_record_keeps_the_operators_limits_in_force(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    """A forged record over the operator's (revision 99, limits loosened) is refused by the authority; the
    operator's next `risk halt` must neither fail on it nor loosen what is in force: it starts from the journal."""
    async with authority(js, tmp_path, RiskLimits(max_position=Decimal(100))) as auth:
        gate = auth.account.gate
        tightened = await _risk(nats_server, tmp_path, "set", "--set", "max_position=5")
        assert tightened.returncode == 0, tightened.stderr
        await wait_for(lambda: gate.limits.max_position == Decimal(5), 10, "the operator's limit")
        await write_forged(js, TradingState.ACTIVE)
        halted = await _risk(nats_server, tmp_path, "halt", "--reason", "forged record")
        assert halted.returncode == 0, halted.stderr
        assert "refused (bad_signature)" in halted.stderr
        assert "applied by the order authority: trading state HALTED" in halted.stderr
        assert gate.state is TradingState.HALTED and gate.state_reason == "forged record"
        assert gate.limits.max_position == Decimal(5), "the halt kept the operator's tightened limit"
        assert auth.account.control_revision == 2
        resumed = await _risk(nats_server, tmp_path, "resume")
        assert resumed.returncode == 0, resumed.stderr
        assert gate.state is TradingState.ACTIVE and gate.limits.max_position == Decimal(5)
