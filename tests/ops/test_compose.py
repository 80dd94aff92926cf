"""docker-compose.yml / docker-compose.test.yml follow the Compose Specification, run the same service
commands as `trading-mcp up`, and the Dockerfile builds a slim non-root image whose health check works.
No docker engine runs here: these are the checks that do not need one."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml
from starlette.applications import Starlette

from bus.embedded import free_port
from cli.main import build_parser, service_commands
from observability.http import ops_routes
from tests.conftest import serve_uvicorn

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = {"gateway", "mcp_server", "execsim", "authority"}
PORTS = {"gateway": 8001, "mcp_server": 8002, "authority": 8003, "execsim": 8004}
NATS_NODES = ["nats-1", "nats-2", "nats-3"]
SEED_LIST = "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222"
SCALE_SERVICES = {"authority-2": "authority", "execsim-2": "execsim"}


def compose(name: str = "docker-compose.yml") -> dict[str, object]:
    return yaml.safe_load((ROOT / name).read_text())


def services(name: str = "docker-compose.yml") -> dict[str, dict[str, object]]:
    return compose(name)["services"]  # type: ignore[return-value]


def compose_spec_errors(document: object) -> list[str]:
    # The Compose Specification's JSON Schema, as vendored by check-jsonschema (its vendor/README.md)
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if m := re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, flags=re.I):
            current = m.group(2)
            stages[current] = [line]
        elif current:
            stages[current].append(line)
    return stages


def test_both_compose_files_are_valid_against_the_compose_specification() -> None:
    assert compose_spec_errors(compose()) == []
    assert compose_spec_errors(compose("docker-compose.test.yml")) == []


def test_the_compose_schema_check_rejects_a_broken_file() -> None:
    broken = compose()
    broken["services"]["gateway"]["depends_on"]["nats-1"]["condition"] = "healthy"  # type: ignore[index]
    broken["services"]["nats-1"]["healthcheck"]["interval"] = 5  # type: ignore[index]
    errors = compose_spec_errors(broken)
    assert any("gateway" in e for e in errors) and any("interval" in e or "5 is not" in e for e in errors)


def test_each_service_command_is_the_one_trading_mcp_up_runs_plus_the_container_host_and_data_dir() -> None:
    parser = build_parser()
    expected = service_commands(parser.parse_args(["up"]))
    assert set(expected) == APP_SERVICES
    entrypoint = next(i for i in dockerfile_stages()["runtime"] if i.startswith("ENTRYPOINT"))
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT")) == ["trading-mcp"]
    for name, spec in services().items():
        if name not in APP_SERVICES:
            continue
        container = vars(parser.parse_args(spec["command"]))  # type: ignore[arg-type]
        local = vars(parser.parse_args(expected[name]))
        assert container.pop("host") == "0.0.0.0" and local.pop("host") is None, name
        if "data_dir" in local:
            assert container.pop("data_dir") == Path("/data") and local.pop("data_dir") is not None, name
        assert container == local, f"{name}: compose runs {spec['command']}, up runs {expected[name]}"


def test_compose_starts_the_services_in_the_order_up_starts_them() -> None:
    """Each app service waits, healthy, for the one `up` starts before it (the authority before the
    MCP server and its bridge, whose orders it admits)."""
    order = list(service_commands(build_parser().parse_args(["up"])))
    assert order == ["execsim", "authority", "mcp_server", "gateway"]
    spec = services()
    for before, after in zip(order, order[1:], strict=False):
        assert spec[after]["depends_on"][before]["condition"] == "service_healthy", (before, after)  # type: ignore[index]


def test_the_authority_and_the_simulator_share_the_signing_key_from_the_environment() -> None:
    spec = services()
    for name in ("authority", "execsim"):
        key = spec[name]["environment"]["TRADING_MCP_AUTHORITY_KEY"]  # type: ignore[index]
        assert key.startswith("${TRADING_MCP_AUTHORITY_KEY:?"), name
        assert any(v.endswith(":/data") for v in spec[name]["volumes"]), name  # type: ignore[union-attr]


def test_the_service_commands_check_notices_a_changed_flag() -> None:
    parser = build_parser()
    expected = service_commands(parser.parse_args(["up"]))["mcp_server"]
    altered = [a for a in expected if a != "--bridge"]
    assert vars(parser.parse_args(altered)) != vars(parser.parse_args(expected))


def test_app_services_wait_for_healthy_nats_and_publish_health_checks_on_their_own_port() -> None:
    spec = services()
    for name in APP_SERVICES:
        service = spec[name]
        for node in NATS_NODES:
            assert service["depends_on"][node]["condition"] == "service_healthy", (name, node)  # type: ignore[index]
        env = service["environment"]
        assert env["NATS_URL"] == SEED_LIST, name  # type: ignore[index]
        assert env["TRADING_MCP_NATS_REPLICAS"] == "3", name  # type: ignore[index]
        assert env["TRADING_MCP_HEALTH_URL"] == f"http://127.0.0.1:{PORTS[name]}/healthz", name  # type: ignore[index]
        assert str(PORTS[name]) in service["command"], name  # type: ignore[operator]
        assert service["ports"][0].endswith(f":{PORTS[name]}:{PORTS[name]}"), name  # type: ignore[index]
        assert "test" in service["healthcheck"], name  # type: ignore[operator]
    assert spec["gateway"]["depends_on"]["mcp_server"]["condition"] == "service_healthy"  # type: ignore[index]


def test_each_nats_node_runs_jetstream_on_its_own_persistent_volume_with_a_monitoring_health_check() -> None:
    spec = services()
    assert sorted(n for n in spec if n.startswith("nats")) == NATS_NODES
    for name in NATS_NODES:
        nats = spec[name]
        command = nats["command"]
        assert "-js" in command and command[command.index("-sd") + 1] == "/data"  # type: ignore[union-attr,index]
        assert command[command.index("-m") + 1] == "8222"  # type: ignore[union-attr,index]
        assert f"{name}-data:/data" in nats["volumes"]  # type: ignore[operator]
        assert f"{name}-data" in compose()["volumes"]  # type: ignore[operator]
        assert any("8222/healthz" in part for part in nats["healthcheck"]["test"])  # type: ignore[index]


def _flag(command: list[str], flag: str) -> str:
    assert command.count(flag) == 1, (flag, command)
    return command[command.index(flag) + 1]


def test_the_three_nats_nodes_form_one_cluster_routed_to_each_other() -> None:
    """One cluster name, a distinct server name per node, a cluster listener, and routes to every node's
    cluster port (nats-server ignores the route to itself); each node's client port on its own host port."""
    spec = services()
    names, host_ports = set(), set()
    for name in NATS_NODES:
        command: list[str] = spec[name]["command"]  # type: ignore[assignment]
        assert _flag(command, "--cluster_name") == "trading-mcp", name
        names.add(_flag(command, "--server_name"))
        assert _flag(command, "--cluster") == "nats://0.0.0.0:6222", name
        routes = _flag(command, "--routes").split(",")
        assert sorted(routes) == [f"nats://{node}:6222" for node in NATS_NODES], name
        (port,) = spec[name]["ports"]  # type: ignore[misc]
        assert port.endswith(":4222"), name
        host_ports.add(port.rsplit(":", 2)[-2])
    assert names == set(NATS_NODES)
    assert len(host_ports) == 3


def test_every_service_takes_the_seed_list_and_creates_r3_streams() -> None:
    """Every trading-mcp container (the app services and the `scale` profile's) names all three nodes and
    creates its streams and buckets with three replicas; the seed list parses as bus.cluster parses it."""
    from bus.cluster import cluster_settings, parse_servers

    spec = services()
    apps = {name: s for name, s in spec.items() if str(s.get("image", "")).startswith("trading-mcp:")}
    assert set(apps) == APP_SERVICES | set(SCALE_SERVICES)
    for name, service in apps.items():
        env: dict[str, str] = service["environment"]  # type: ignore[assignment]
        assert parse_servers(env["NATS_URL"]) == [f"nats://{node}:4222" for node in NATS_NODES], name
        assert cluster_settings(env).replicas == 3, name


def test_the_scale_profile_runs_a_second_authority_and_simulator_like_the_first() -> None:
    spec = services()
    for extra, original in SCALE_SERVICES.items():
        assert spec[extra]["profiles"] == ["scale"], extra
        assert "profiles" not in spec[original], original
        assert spec[extra]["command"] == spec[original]["command"], extra
        assert spec[extra]["environment"] == spec[original]["environment"], extra
        assert spec[extra]["depends_on"] == spec[original]["depends_on"], extra
        assert spec[extra]["volumes"] == [f"{extra}-data:/data"], extra  # its own data dir
        assert not spec[extra].get("ports"), extra  # the first one holds the host port
        assert f"{extra}-data" in compose()["volumes"]  # type: ignore[operator]


def test_secrets_come_from_the_environment_and_are_required() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    env = {name: s["environment"] for name, s in services().items() if "environment" in s}
    assert env["gateway"]["TRADING_MCP_WEBHOOK_SECRET"].startswith("${TRADING_MCP_WEBHOOK_SECRET:?")  # type: ignore[index]
    assert env["mcp_server"]["TRADING_MCP_AUTH_TOKEN"].startswith("${TRADING_MCP_AUTH_TOKEN:?")  # type: ignore[index]
    assert env["grafana"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")  # type: ignore[index]
    assert not re.search(r"whsec_[A-Za-z0-9+/=]{8,}", text), "a literal secret is in docker-compose.yml"


def test_prometheus_mounts_its_config_and_rules_where_the_config_expects_them() -> None:
    prometheus = services()["prometheus"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in prometheus["volumes"]}  # type: ignore[union-attr]
    assert mounts["/etc/prometheus/prometheus.yml"] == "./observability/prometheus.yml"
    assert mounts["/etc/prometheus/alerts.yml"] == "./observability/alerts.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]  # type: ignore[operator]


def test_the_test_stack_runs_the_signal_flow_script_then_the_suite_after_the_services_are_healthy() -> None:
    tests = services("docker-compose.test.yml")["tests"]
    assert tests["build"]["target"] == "test"  # type: ignore[index]
    assert "test" in dockerfile_stages()
    command = " ".join(tests["command"])  # type: ignore[arg-type]
    assert "scripts/test-signal-flow.sh" in command and "pytest" in command
    # every app service is healthy first: waited for directly, or through a service that waits for it
    spec = {**services(), **services("docker-compose.test.yml")}
    waited: set[str] = set()
    todo = ["tests"]
    while todo:
        for dep, cond in spec[todo.pop()].get("depends_on", {}).items():  # type: ignore[union-attr]
            if cond["condition"] == "service_healthy" and dep not in waited:
                waited.add(dep)
                todo.append(dep)
    assert waited >= APP_SERVICES, APP_SERVICES - waited


def test_the_final_image_is_slim_non_root_and_holds_only_the_builder_venv() -> None:
    stages = dockerfile_stages()
    assert list(stages)[-1] == "runtime", "the runtime stage must be last (the default target)"
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in (ROOT / "Dockerfile").read_text()
    runtime = stages["runtime"]
    assert runtime[0].startswith("FROM ${PYTHON_IMAGE}")
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    user = next(i for i in runtime if i.startswith("USER")).split()[1]
    assert user.split(":")[0] not in {"0", "root"}
    for instruction in runtime:
        assert not re.search(r"apt-get install|pip install|gcc|build-essential|COPY \. ", instruction), instruction
    assert any("pip wheel" in i for i in stages["builder"])


def _healthcheck_argv() -> list[str]:
    line = next(i for i in dockerfile_stages()["runtime"] if i.startswith("HEALTHCHECK"))
    argv = json.loads(line.split(" CMD ", 1)[1])
    assert argv[0] == "python" and "/healthz" not in argv[2]  # the URL comes from TRADING_MCP_HEALTH_URL
    return [sys.executable, *argv[1:]]


async def test_the_image_health_check_passes_on_a_live_healthz_and_fails_when_nothing_answers() -> None:
    async def ready() -> dict[str, bool]:
        return {"nats": True}

    argv = _healthcheck_argv()
    port = free_port()
    async with serve_uvicorn(Starlette(routes=ops_routes(ready)), port) as base:
        env = {"TRADING_MCP_HEALTH_URL": f"{base}/healthz"}
        ok = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, timeout=10)
    down = subprocess.run(
        argv, env={"TRADING_MCP_HEALTH_URL": f"http://127.0.0.1:{free_port()}/healthz"}, capture_output=True, timeout=10
    )
    assert ok.returncode == 0, ok.stderr
    assert down.returncode != 0


@pytest.mark.parametrize("service", sorted(APP_SERVICES))
def test_the_compose_health_check_is_the_image_health_check(service: str) -> None:
    test = services()[service]["healthcheck"]["test"]  # type: ignore[index]
    assert test[0] == "CMD" and test[1:] == ["python", *_healthcheck_argv()[1:]], shlex.join(test)


def test_the_docker_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "webhook_secret", "nats.json"} <= ignored
