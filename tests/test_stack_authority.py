"""The whole stack (`trading-mcp up`, real processes, the locked embedded NATS): a loss limit's REDUCING holds
through a kill -9 of `up` and a restart, a fresh stdio server shows it too, and an order intent published
around the authority — with another role's credentials or none — is refused by the bus and fills nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import nats
import pytest
from mcp import Client, StdioServerParameters

from bus.credentials import nats_auth
from schemas.orders import OrderIntent
from tests.test_cli_processes import (
    EXE,
    _stop,
    _up,
    _wait_banner,
    free_ports,
    processes_of,
    until,
)


def _send(data_dir: Path, gw: int, price: str, *action: str) -> None:
    done = subprocess.run(
        [EXE, "send-signal", "--data-dir", str(data_dir), "--url", f"http://127.0.0.1:{gw}/webhook",
         "--symbol", "AAPL", "--price", price, *action],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("202 "), done.stdout + done.stderr


def _risk(data_dir: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    done = subprocess.run(
        [EXE, "risk", *args, "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


async def _status(url: str) -> dict[str, object]:
    async with Client(url) as client:
        status = (await client.call_tool("get_risk_status", {})).structured_content
        positions = (await client.call_tool("get_positions", {})).structured_content
    return {**status, "positions": {p["symbol"]: p["quantity"] for p in positions["positions"]}}


async def _wait_status(url: str, what: str, check, timeout: float = 20) -> dict[str, object]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        status = await _status(url)
        if check(status):
            return status
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {status}"
        await asyncio.sleep(0.2)


async def test_a_loss_limit_state_survives_kill_9_of_up_and_the_bus_refuses_intents_from_anyone_but_the_authority(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    ports = free_ports()
    url = f"http://127.0.0.1:{ports['mcp']}/mcp"
    proc = _up(data_dir, ports)
    try:
        _wait_banner(proc)
        assert "applied by the order authority" in _risk(data_dir, "set", "--set", "daily_loss_limit=100")
        _send(data_dir, ports["gw"], "200", "--action", "buy", "--quantity", "15")
        await _wait_status(url, "the fill", lambda s: s["positions"].get("AAPL") == "15")
        _send(data_dir, ports["gw"], "160")  # a mark 40 lower: 600 lost today, beyond the limit of 100
        reducing = await _wait_status(url, "REDUCING", lambda s: s["trading_state"] == "REDUCING")
        assert reducing["state_reason"] == "daily_loss_limit" and Decimal(str(reducing["daily_pnl"])) == -600

        # around the authority: the bus itself refuses an intent from the MCP role, or from no credentials
        nats_url = f"nats://127.0.0.1:{ports['nats']}"
        intent = OrderIntent(
            client_order_id="forged-1", symbol="AAPL", side="buy", quantity=Decimal(5000),
            reference_price=Decimal(160), origin="bridge", created_at=datetime.now(UTC), correlation_id="forged",
        )  # fmt: skip
        nc = await nats.connect(nats_url, **nats_auth("mcp", data_dir), allow_reconnect=False)
        js = nc.jetstream()
        with pytest.raises(Exception):  # noqa: B017  (a permissions violation: no ack ever comes)
            await js.publish("decisions.order_intent", intent.model_dump_json().encode(), timeout=2)
        await nc.close()
        with pytest.raises(Exception):  # noqa: B017  (no user, no connection)
            await nats.connect(nats_url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)

        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # every child dies with `up`, the nats-server too: nothing but the data dir's store is left
        until(lambda: not processes_of(data_dir), 20, "no process of the data dir left")
    finally:
        if proc.poll() is None:
            proc.kill()

    proc = _up(data_dir, ports)
    try:
        _wait_banner(proc)
        after = await _wait_status(url, "the journal folded", lambda s: s["positions"].get("AAPL") == "15")
        assert (after["trading_state"], after["state_reason"]) == ("REDUCING", "daily_loss_limit")
        assert after["peak_equity"] == reducing["peak_equity"]
        assert after["day_start_equity"] == reducing["day_start_equity"]
        assert after["orders_in_window"] == reducing["orders_in_window"] == 1
        stdio = StdioServerParameters(
            command=EXE,
            args=["serve", "--transport", "stdio", "--data-dir", str(data_dir), "--toolsets", "all"],
            env={k: v for k, v in os.environ.items() if k != "NATS_URL"},
        )
        async with Client(stdio) as fresh:
            status = (await fresh.call_tool("get_risk_status", {})).structured_content
            adding = await fresh.call_tool("check_order", {"symbol": "AAPL", "side": "buy", "quantity": "1"})
        assert (status["trading_state"], status["state_reason"]) == ("REDUCING", "daily_loss_limit")
        assert adding.structured_content["reason_code"] == "reducing_only", "the same account, the same gate"
        assert (await _status(url))["positions"] == {"AAPL": "15"}, "the forged 5000 never filled"
    finally:
        _stop(proc)
