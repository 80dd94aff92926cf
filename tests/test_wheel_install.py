"""The project's wheel, installed with no extras into a clean virtualenv, runs the system: `trading-mcp --help`,
`trading-mcp up` until the gateway and the MCP server answer /healthz, a signed `send-signal` accepted and
filled, and SIGINT stops everything. This is what the Dockerfile's runtime image holds (`pip wheel` then
`pip install` of the wheel alone), so a module or data file the wheel leaves out, or a dependency that only
the dev extras bring, fails here.

Slow (a minute or more: pip resolves every dependency from the configured index); `pytest -m "not slow"`
leaves it out of a fast inner loop, `make test` runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bus.embedded import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
# Local state, caches and other build output: what a clean checkout does not have.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".tools", "build", "dist", "*.egg-info", "__pycache__", "node_modules",
    ".pytest_cache", ".ruff_cache", ".hypothesis", ".import_linter_cache",
)  # fmt: skip


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, detail: Callable[[], str] = str) -> None:
    """Poll a condition with a bound; `detail()` (say, a log) goes into the failure message."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{detail()}")
        time.sleep(0.1)


def http_status(url: str) -> int | None:
    """The status a GET answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def http_text(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def clean_env() -> dict[str, str]:
    """This process's environment without what points at the dev venv, the source tree or a running system."""
    dropped = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "NATS_URL"}
    return {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("TRADING_MCP_")}


def run(argv: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean virtualenv with the project's wheel installed, no extras, dependencies from the configured index."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)  # builds there, so no build/ lands in the work tree
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(source)], tmp, 300)
    wheels = list((tmp / "dist").glob("trading_mcp-*.whl"))
    assert len(wheels) == 1, wheels
    run([sys.executable, "-m", "venv", str(tmp / "venv")], tmp, 120)
    run([str(tmp / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])], tmp, 600)
    yield tmp / "venv"


def test_the_wheel_installs_without_the_dev_extras_and_imports_from_the_venv_not_the_source_tree(venv: Path) -> None:
    probe = (
        "import importlib.util, json, cli.main, execsim.engine, strategies.indicators, mcp_server.toolsets;"
        "print(json.dumps({'cli': cli.main.__file__, 'pytest': importlib.util.find_spec('pytest') is not None,"
        " 'hypothesis': importlib.util.find_spec('hypothesis') is not None}))"
    )
    found = json.loads(run([str(venv / "bin" / "python"), "-c", probe], venv.parent, 60))
    assert Path(found["cli"]).is_relative_to(venv), found["cli"]
    assert found == {**found, "pytest": False, "hypothesis": False}, "a dev extra was installed"


def test_the_installed_trading_mcp_lists_its_commands(venv: Path) -> None:
    out = run([str(venv / "bin" / "trading-mcp"), "--help"], venv.parent, 60)
    for command in ("up", "serve", "gateway", "execsim", "authority", "send-signal"):
        assert command in out


def test_the_installed_system_starts_takes_a_signed_signal_fills_it_and_stops_on_sigint(venv: Path) -> None:
    exe = str(venv / "bin" / "trading-mcp")
    data_dir = venv.parent / "data"
    ports = {name: free_port() for name in ("gateway", "mcp", "execsim", "authority", "nats")}
    env = {**clean_env(), "TRADING_MCP_NATS_PORT": str(ports["nats"])}
    log_path = venv.parent / "up.log"
    argv = [
        exe, "up", "--data-dir", str(data_dir), "--gateway-port", str(ports["gateway"]),
        "--mcp-port", str(ports["mcp"]), "--execsim-port", str(ports["execsim"]),
        "--authority-port", str(ports["authority"]),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=venv.parent, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log_text() -> str:
        return log_path.read_text(errors="replace")

    gateway = f"http://127.0.0.1:{ports['gateway']}"
    try:
        for name in ("gateway", "mcp"):
            url = f"http://127.0.0.1:{ports[name]}/healthz"

            def healthy(url: str = url) -> bool:
                assert proc.poll() is None, f"`trading-mcp up` exited {proc.returncode}:\n{log_text()}"
                return http_status(url) == 200

            wait_until(healthy, 120, f"{url} to answer 200", log_text)

        sent = subprocess.run(
            [exe, "send-signal", "--data-dir", str(data_dir), "--url", f"{gateway}/webhook",
             "--symbol", "AAPL", "--price", "190.25", "--action", "buy", "--quantity", "10"],
            cwd=venv.parent, env=clean_env(), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr
        status, _, body = sent.stdout.strip().partition(" ")
        assert status == "202", sent.stdout
        accepted = json.loads(body)
        assert accepted["signal_id"].startswith("sig_") and accepted["duplicate"] is False

        # the bridge, the order authority and the simulator from the wheel take it to a fill
        fills = f"http://127.0.0.1:{ports['execsim']}/metrics"
        filled = 'exec_sim_fills_generated_total{side="buy"} 1.0'
        wait_until(lambda: filled in http_text(fills), 60, "the buy to be filled", log_text)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise
    assert code == 0, log_text()
    wait_until(lambda: http_status(f"{gateway}/healthz") is None, 15, "the gateway to stop with `trading-mcp up`")
