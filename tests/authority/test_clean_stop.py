"""A SIGTERM (how `trading-mcp up` stops its children) ends the gateway, `serve`, an authority and a simulator
cleanly: each exits 0, the gateway after closing its NATS connection, `serve` after stopping its bridge, the others
after giving their lease back, the authority writing its stop snapshot first. uvicorn re-raised the captured
SIGTERM as soon as it stopped serving, so each process died (-15) before any of that (observability.http.OpsServer)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bus.embedded import EmbeddedNats
from bus.lease import lease_bucket, read_lease
from bus.snapshot import read_snapshot
from gateway.signing import new_secret
from schemas.account import journal_stream
from schemas.subjects import Subject
from tests.authority.test_authority_processes import limits_file
from tests.conftest import wait_for
from tests.execsim.process_helpers import Service, publish_all, services, signal


async def test_sigterm_gives_the_leases_back_writes_the_stop_snapshot_and_exits_0(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    execsim = Service(["execsim", *data], nats_server.url, tmp_path / "execsim.log")
    authority = Service(
        ["authority", *data, "--risk-limits-file", limits_file(tmp_path, max_position=1000)],
        nats_server.url,
        tmp_path / "authority.log",
    )
    bridge = Service(
        ["serve", "--transport", "streamable-http", "--bridge", "--bridge-mode", "follow", *data],
        nats_server.url,
        tmp_path / "bridge.log",
    )
    gateway = Service(
        ["gateway", *data], nats_server.url, tmp_path / "gateway.log", env={"TRADING_MCP_WEBHOOK_SECRET": new_secret()}
    )
    with services(gateway, bridge, authority, execsim):
        for s in (execsim, authority, bridge, gateway):
            await s.start()
        kv = await lease_bucket(js)

        async def owned() -> bool:
            return all([await read_lease(kv, role, "paper") is not None for role in ("authority", "execsim")])

        await wait_for(owned, 30, "the account owned by the authority and the simulator")
        signals = [signal("AAPL", f"{190 + i}", "buy", 1) for i in range(3)]
        await publish_all(js, Subject.SIGNALS_NORMALIZED, signals, [s.signal_id for s in signals])

        async def filled() -> bool:
            info = await js.stream_info("EXECUTIONS", subjects_filter="executions.fill")
            return (info.state.subjects or {}).get("executions.fill", 0) == 3

        await wait_for(filled, 30, "three fills")
        for s in (gateway, bridge, authority, execsim):
            assert s.proc is not None
            s.proc.terminate()  # SIGTERM
            code = await asyncio.to_thread(s.proc.wait, 20)
            assert code == 0, (s.args[0], code, s.log.read_text()[-2000:])
        # the leases were given back (not left to expire), and the authority's last act was its snapshot
        assert await read_lease(kv, "authority", "paper") is None
        assert await read_lease(kv, "execsim", "paper") is None
        assert "account released" in authority.log.read_text()
        restored = await read_snapshot(js, "paper")
        assert restored is not None
        seq, account = restored
        assert account.admitted_total == 3 and account.portfolio.fill_count == 3
        info = await js.stream_info(journal_stream("paper"))
        assert seq == info.state.last_seq  # the snapshot is of the whole journal: a restart folds nothing
