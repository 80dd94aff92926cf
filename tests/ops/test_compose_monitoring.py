"""Prometheus in docker-compose.yml can scrape every service it is pointed at. No docker engine runs here, so:
the config compose mounts is rendered as the container sees it (its bind mounts and secrets laid out under a
temporary root) and passes `promtool check config` there; every scrape target is a compose service on the
port its command serves /metrics on; a service whose /metrics needs a bearer token is scraped with that same
token, from a compose secret, and no other service gets it; and the MCP server's real HTTP guard, set up
from the compose environment, answers the scrape Prometheus sends with 200 (401 without the token)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from mcp.server.mcpserver import MCPServer

from bus.embedded import free_port
from cli.main import build_parser
from mcp_server.settings import ServeSettings
from mcp_server.transports import http_app
from tests.conftest import serve_uvicorn
from tests.ops.test_compose import ROOT, compose, services

# What the operator exports before `docker compose up` (values for the test only).
OPERATOR_ENV = {
    "TRADING_MCP_AUTH_TOKEN": "compose-mcp-token-0123456789abcdef",
    "TRADING_MCP_WEBHOOK_SECRET": "whsec_dGVzdC1zZWNyZXQtZm9yLWNvbXBvc2UtdGVzdHM=",
    "TRADING_MCP_AUTHORITY_KEY": "ab" * 32,
    "GRAFANA_ADMIN_PASSWORD": "not-a-real-password",
}
# The MCP server's HTTP guard (mcp_server/transports.py) wants the static token from this variable.
TOKEN_VARIABLE = "TRADING_MCP_AUTH_TOKEN"
PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}` (an unset required variable fails)."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        assert op != ":?", f"compose would refuse to start: {name} is unset ({arg})"
        return arg if op == ":-" else ""

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-?])([^}]*))?\}", one, value)


def environment(service: str) -> dict[str, str]:
    env = services()[service].get("environment", {})
    return {k: interpolate(str(v), OPERATOR_ENV) for k, v in env.items()}  # type: ignore[union-attr]


def prometheus_secret_targets() -> dict[str, str]:
    """Secret name -> where the prometheus container sees it (`/run/secrets/<target>`)."""
    mounted: dict[str, str] = {}
    for entry in services()["prometheus"].get("secrets", []):  # type: ignore[union-attr]
        source, target = (entry, entry) if isinstance(entry, str) else (entry["source"], entry.get("target"))
        target = target or source
        mounted[source] = target if target.startswith("/") else f"/run/secrets/{target}"
    return mounted


def secret_value(name: str) -> str:
    definition = compose()["secrets"][name]  # type: ignore[index]
    assert "environment" in definition, f"secret {name}: only environment-sourced secrets are rendered here"
    return OPERATOR_ENV[definition["environment"]]


def render_container(root: Path) -> Path:
    """Lay out what the prometheus container sees under `root`; return the config file, its paths rewritten
    to point under `root` (Prometheus resolves relative ones against the config's folder, so those stay)."""
    prometheus = services()["prometheus"]
    for volume in prometheus["volumes"]:  # type: ignore[union-attr]
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            destination = root / target.lstrip("/")
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / source, destination)
    for name, target in prometheus_secret_targets().items():
        destination = root / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(secret_value(name))
    flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))  # type: ignore[union-attr]
    config_path = root / flag.split("=", 1)[1].lstrip("/")
    config = yaml.safe_load(config_path.read_text())

    def rebase(node: object) -> object:
        if isinstance(node, dict):
            return {
                k: str(root / v.lstrip("/")) if k.endswith("_file") and str(v).startswith("/") else rebase(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [rebase(v) for v in node]
        return node

    config_path.write_text(yaml.safe_dump(rebase(config)))
    return config_path


def scrape_jobs() -> dict[str, dict[str, object]]:
    config = yaml.safe_load((ROOT / "observability" / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def targets(job: dict[str, object]) -> list[tuple[str, int]]:
    found = []
    for static in job["static_configs"]:  # type: ignore[attr-defined]
        for target in static["targets"]:
            host, _, port = target.rpartition(":")
            found.append((host, int(port)))
    return found


def metrics_port(service: str) -> int:
    """The port the service's command binds: its /healthz, /readyz and /metrics are there."""
    return int(vars(build_parser().parse_args(services()[service]["command"]))["port"])  # type: ignore[arg-type]


def needs_token(service: str) -> bool:
    return bool(environment(service).get(TOKEN_VARIABLE))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: `apt-get install --no-install-recommends prometheus` (make test does)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def test_the_config_compose_mounts_passes_promtool_as_the_prometheus_container_sees_it(tmp_path: Path) -> None:
    config = render_container(tmp_path)
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rule files found" in result.stdout


def test_promtool_fails_the_rendered_config_when_compose_does_not_mount_the_token(tmp_path: Path) -> None:
    config = render_container(tmp_path)
    for target in prometheus_secret_targets().values():
        (tmp_path / target.lstrip("/")).unlink()
    result = promtool("check", "config", str(config))
    assert result.returncode != 0 and "no such file" in result.stdout + result.stderr


def test_every_scrape_target_is_a_compose_service_on_the_port_it_serves_metrics_on() -> None:
    spec = services()
    scraped = set()
    for name, job in scrape_jobs().items():
        assert job.get("metrics_path", "/metrics") == "/metrics", name
        assert job.get("scheme", "http") == "http", name
        for host, port in targets(job):
            assert host in spec, f"job {name}: no compose service {host}"
            assert port == metrics_port(host), f"job {name}: {host} serves /metrics on {metrics_port(host)}, not {port}"
            # one network: the default one, unless both name another they share
            nets = {s: set(spec[s].get("networks", ["default"])) for s in (host, "prometheus")}  # type: ignore[arg-type]
            assert nets[host] & nets["prometheus"], f"prometheus cannot reach {host}"
            scraped.add(host)
    assert scraped == {"gateway", "mcp_server", "execsim", "authority"}


def test_a_service_that_guards_metrics_with_a_token_is_scraped_with_its_own_token_and_no_other_service_gets_it() -> (
    None
):
    mounted = prometheus_secret_targets()
    token_paths = {target for name, target in mounted.items() if secret_value(name) == OPERATOR_ENV[TOKEN_VARIABLE]}
    guarded = set()
    for name, job in scrape_jobs().items():
        (host, _), *_ = targets(job)
        auth = job.get("authorization")
        if needs_token(host):
            guarded.add(host)
            assert isinstance(auth, dict), f"job {name}: {host} needs `Authorization: Bearer` on /metrics"
            assert auth.get("type", "Bearer") == "Bearer", name
            assert auth.get("credentials_file") in token_paths, f"job {name}: not the secret holding {host}'s token"
            assert "credentials" not in auth, f"job {name}: a literal token in prometheus.yml"
        else:
            assert auth is None, f"job {name}: {host} needs no credentials, so it must not be sent one"
    assert guarded == {"mcp_server"}


async def scrape(base: str, target: str, authorization: str | None) -> httpx.Response:
    headers = {"host": target, "accept": PROMETHEUS_ACCEPT}
    if authorization is not None:
        headers["authorization"] = authorization
    async with httpx.AsyncClient() as client:
        return await client.get(f"{base}/metrics", headers=headers)


async def test_the_mcp_servers_guard_set_up_as_compose_starts_it_answers_prometheus_scrape_and_refuses_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in environment("mcp_server").items():
        monkeypatch.setenv(key, value)
    command = vars(build_parser().parse_args(services()["mcp_server"]["command"]))  # type: ignore[arg-type]
    port = free_port()
    settings = ServeSettings(data_dir=tmp_path, transport=command["transport"], host=command["host"], port=port)
    assert settings.auth_token is not None, "compose starts the MCP server without a token: nothing to check"

    job = scrape_jobs()["mcp_server"]
    auth = job["authorization"]
    container = tmp_path / "prometheus"
    render_container(container)
    credentials = container / auth["credentials_file"].lstrip("/")  # type: ignore[index]
    # Prometheus sends `Authorization: <type> <file content, whitespace trimmed>`
    sent = f"{auth.get('type', 'Bearer')} {credentials.read_text().strip()}"  # type: ignore[union-attr]
    (target,) = job["static_configs"][0]["targets"]  # type: ignore[index]

    async def ready() -> dict[str, bool]:
        return {"nats": True}

    async with serve_uvicorn(http_app(MCPServer("compose-scrape"), settings, ready), port) as base:
        scraped = await scrape(base, target, sent)
        anonymous = await scrape(base, target, None)
        wrong = await scrape(base, target, "Bearer not-the-token")
    assert scraped.status_code == 200, scraped.text
    assert "# TYPE mcp_signals_received_total counter" in scraped.text
    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert OPERATOR_ENV[TOKEN_VARIABLE] not in anonymous.text + wrong.text
