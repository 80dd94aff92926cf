"""`trading-mcp reset`: a fresh account, never by accident, never under a running system."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from nats.js import api
from nats.js.errors import NotFoundError

from bus.embedded import EmbeddedNats, ensure_embedded, free_port
from tests.test_cli_processes import _up, _wait_banner, free_ports, requires_authority, send_signal, signal_symbols

EXE = str(Path(sys.executable).parent / "trading-mcp")
SECRETS = ("webhook_secret", "operator_token", "authority_key", "nats-auth.json")


def reset(data_dir: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    return subprocess.run(
        [EXE, "reset", "--data-dir", str(data_dir), *flags],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
    )


def account_dir(tmp_path: Path) -> Path:
    """A data dir as `up` leaves it (stopped): store, state, log, secrets, the sources file."""
    d = tmp_path / "acct"
    (d / "nats" / "jetstream").mkdir(parents=True)
    (d / "nats" / "jetstream" / "blk").write_text("old prices")
    (d / "nats-server.log").write_text("log")
    for name in (*SECRETS, "sources.toml"):
        (d / name).write_text(name)
    return d


def test_reset_refuses_without_yes_when_stdin_is_not_a_terminal(tmp_path: Path) -> None:
    d = account_dir(tmp_path)
    result = reset(d)
    assert result.returncode == 2
    assert "--yes" in result.stderr and "not a terminal" in result.stderr
    assert (d / "nats" / "jetstream" / "blk").exists(), "nothing may be deleted"


def test_reset_with_yes_removes_the_store_and_keeps_the_secrets_unless_all(tmp_path: Path) -> None:
    d = account_dir(tmp_path)
    result = reset(d, "--yes")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in d.iterdir()) == sorted((*SECRETS, "sources.toml"))
    assert f"removed {d / 'nats'}/" in result.stdout and f"removed {d / 'nats-server.log'}" in result.stdout
    assert "kept" in result.stdout

    result = reset(d, "--yes", "--all")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in d.iterdir()] == ["sources.toml"], "the sources file is the operator's, not state"


def test_reset_refuses_a_directory_that_is_not_a_data_dir(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = reset(tmp_path, "--yes")
    assert result.returncode == 2 and "does not look like a trading-mcp data dir" in result.stderr
    assert (tmp_path / "notes.txt").exists()


def test_reset_refuses_while_the_embedded_server_of_that_data_dir_runs(tmp_path: Path) -> None:
    d = tmp_path / "acct"
    server = ensure_embedded(d, free_port())
    try:
        result = reset(d, "--yes")
        assert result.returncode == 2
        assert "a system is running" in result.stderr and str(server.process.pid) in result.stderr  # type: ignore[union-attr]
        assert (d / "nats").exists()
    finally:
        server.stop()
    result = reset(d, "--yes")
    assert result.returncode == 0, result.stderr
    assert not (d / "nats").exists() and not (d / "nats.json").exists()


def _interactive(data_dir: Path, answer: str) -> subprocess.CompletedProcess[str]:
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [EXE, "reset", "--data-dir", str(data_dir)],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "NATS_URL"},
        )
        os.close(slave)
        os.write(master, answer.encode() + b"\n")
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        os.close(master)


def test_reset_at_a_terminal_asks_for_the_data_dir_name(tmp_path: Path) -> None:
    d = account_dir(tmp_path)
    wrong = _interactive(d, "yes")
    assert wrong.returncode == 1 and "Type the data dir name (acct) to confirm" in wrong.stdout
    assert "nothing was deleted" in wrong.stderr and (d / "nats").exists()
    right = _interactive(d, "acct")
    assert right.returncode == 0, right.stderr
    assert not (d / "nats").exists() and (d / "webhook_secret").exists()


async def test_reset_with_nats_url_deletes_the_account_streams_and_buckets(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        for name, subjects in (("SIGNALS", ["signals.>"]), ("EXECUTIONS", ["executions.>"]), ("OTHER", ["other.>"])):
            await js.add_stream(api.StreamConfig(name=name, subjects=subjects))
        await js.publish("signals.normalized", b"{}")
        await js.create_key_value(api.KeyValueConfig(bucket="RISK_CONTROL"))
        refused = reset(tmp_path, env={"NATS_URL": nats_server.url})
        assert refused.returncode == 2
        assert (await js.stream_info("SIGNALS")).state.messages == 1

        result = reset(tmp_path, "--yes", env={"NATS_URL": nats_server.url})
        assert result.returncode == 0, result.stderr
        assert "deleted stream SIGNALS" in result.stdout and "deleted KV bucket RISK_CONTROL" in result.stdout
        for gone in ("SIGNALS", "EXECUTIONS", "KV_RISK_CONTROL"):
            with pytest.raises(NotFoundError):
                await js.stream_info(gone)
        await js.stream_info("OTHER")  # not the account's: left alone
    finally:
        await nc.close()


@requires_authority
async def test_after_reset_up_starts_with_an_empty_account(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = free_ports()
    proc = _up(data_dir, ports)
    try:
        _wait_banner(proc)
        sent = send_signal(data_dir, ports["gw"], symbol="OLDERA")
        assert sent.returncode == 0 and sent.stdout.startswith("202 "), sent.stdout + sent.stderr
        assert "OLDERA" in await signal_symbols(ports["mcp"])
        refused = reset(data_dir, "--yes")
        assert refused.returncode == 2 and "a system is running" in refused.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    secret = (data_dir / "webhook_secret").read_text()

    result = reset(data_dir, "--yes")
    assert result.returncode == 0, result.stderr

    proc = _up(data_dir, ports)
    try:
        _wait_banner(proc)
        assert await signal_symbols(ports["mcp"]) == []
        assert (data_dir / "webhook_secret").read_text() == secret, "the webhook secret survives a reset"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
