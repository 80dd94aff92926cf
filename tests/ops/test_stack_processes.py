"""Against real processes started by `trading-mcp up` (free ports, embedded NATS on a free port, data dir
in tmp): scripts/test-signal-flow.sh follows a signal to a fill, and one correlation id shows up in the
gateway, bridge and simulator JSON logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bus.embedded import free_port
from gateway import signing
from tests.conftest import wait_for
from tests.test_cli_processes import requires_authority

pytestmark = requires_authority

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).parent / "trading-mcp")


@dataclass
class Stack:
    data_dir: Path
    ports: dict[str, int]
    log: Path

    @property
    def secret(self) -> str:
        return (self.data_dir / "webhook_secret").read_text().strip()

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHON": sys.executable,
            "GATEWAY_URL": f"http://127.0.0.1:{self.ports['gw']}",
            "MCP_URL": f"http://127.0.0.1:{self.ports['mcp']}/mcp",
            "NATS_URL": f"nats://127.0.0.1:{self.ports['nats']}",
            "TRADING_MCP_DATA_DIR": str(self.data_dir),
        }

    def log_lines(self) -> list[dict[str, object]]:
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return lines


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    ports = {"gw": free_port(), "mcp": free_port(), "ex": free_port(), "au": free_port(), "nats": free_port()}
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["TRADING_MCP_NATS_PORT"] = str(ports["nats"])
    log = tmp / "services.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [EXE, "up", "--data-dir", str(tmp / "data"), "--gateway-port", str(ports["gw"]),
             "--mcp-port", str(ports["mcp"]), "--execsim-port", str(ports["ex"]), "--authority-port", str(ports["au"])],
            env=env, stdout=subprocess.PIPE, stderr=err,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while "Ctrl-C stops everything" not in (line := proc.stdout.readline().decode()):
            assert line and time.monotonic() < deadline, f"`trading-mcp up` did not start:\n{log.read_text()}"
        state = json.loads((tmp / "data" / "nats.json").read_text())
        assert state["port"] == ports["nats"]
        yield Stack(tmp / "data", ports, log)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def test_the_signal_flow_script_follows_a_signal_from_the_gateway_to_a_position(stack: Stack) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "test-signal-flow.sh")], env=stack.env(), capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line[:2] in {"1 ", "2 ", "3 ", "4 ", "5 "}]
    assert [line.split()[1] for line in lines] == ["gateway", "SIGNALS", "DECISIONS", "EXECUTIONS", "MCP"]
    assert "202 signal_id=sig_" in lines[0]
    assert "signals.normalized stored" in lines[1]
    assert "decisions.order_intent" in lines[2] and "buy 1 FLOWTEST" in lines[2]
    assert "executions.fill" in lines[3]
    assert "get_positions FLOWTEST quantity" in lines[4]


def test_the_signal_flow_script_fails_naming_the_hop_the_risk_gate_stopped(stack: Stack) -> None:
    # 5000 units is over the default max_position (1000): the bridge publishes decisions.risk_denied
    env = {**stack.env(), "FLOW_QUANTITY": "5000", "FLOW_SYMBOL": "FLOWDENY", "FLOW_TIMEOUT": "15"}
    result = subprocess.run(
        [str(ROOT / "scripts" / "test-signal-flow.sh")], env=env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 SIGNALS" in result.stdout and "3 DECISIONS" not in result.stdout
    assert "FAILED: the risk gate denied the order" in result.stderr


def test_the_signal_flow_script_fails_when_the_gateway_refuses_the_signature(stack: Stack) -> None:
    env = {**stack.env(), "TRADING_MCP_WEBHOOK_SECRET": signing.new_secret()}
    result = subprocess.run(
        [str(ROOT / "scripts" / "test-signal-flow.sh")], env=env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 1
    assert "FAILED: gateway answered 401" in result.stderr and "invalid_signature" in result.stderr


async def test_one_webhook_correlation_id_appears_in_the_gateway_bridge_and_simulator_logs(stack: Stack) -> None:
    correlation_id = f"corr-{uuid.uuid4().hex}"
    body = json.dumps({"symbol": "CORR", "price": "50", "action": "buy", "quantity": 1}).encode()
    msg_id, ts = f"msg_{uuid.uuid4().hex}", int(time.time())
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.ports['gw']}/webhook",
        data=body,
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signing.sign(stack.secret, msg_id, ts, body),
            "X-Correlation-ID": correlation_id,
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        assert response.headers["X-Correlation-ID"] == correlation_id

    def events_by_service() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for line in stack.log_lines():
            if line.get("correlation_id") == correlation_id:
                found.setdefault(str(line.get("service")), set()).add(str(line.get("event")))
        return found

    services = {"gateway", "mcp_server", "execsim"}
    await wait_for(lambda: services <= events_by_service().keys(), 15, "the correlation id in all three logs")
    found = events_by_service()
    assert "webhook accepted" in found["gateway"]
    assert "order intent" in found["mcp_server"]
    assert "fill" in found["execsim"]
