"""The Grafana dashboards are generated, provisioned, and only query metrics the services export."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from scripts import gen_dashboards
from tests.ops.promql import exported_metric_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "observability" / "grafana"


def dashboards() -> dict[str, dict[str, object]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def panels(board: dict[str, object]) -> list[dict[str, object]]:
    return list(board["panels"])  # type: ignore[arg-type]


def test_the_committed_dashboards_are_what_the_generator_writes() -> None:
    for path, text in gen_dashboards.rendered().items():
        assert path.exists(), f"{path.name} missing: run python -m scripts.gen_dashboards"
        assert path.read_text() == text, f"{path.name} is stale: run python -m scripts.gen_dashboards"
    assert {p.name for p in (GRAFANA / "dashboards").glob("*.json")} == {p.name for p in gen_dashboards.rendered()}


def test_the_five_dashboards_signal_flow_latency_decisions_fills_and_risk_exist_with_unique_uids() -> None:
    boards = dashboards()
    titles = " | ".join(str(b["title"]) for b in boards.values())
    for topic in (
        "Signal flow",
        "Latency percentiles",
        "Decisions by strategy and confidence",
        "Fills and PnL",
        "Risk",
    ):
        assert topic in titles
    uids = [b["uid"] for b in boards.values()]
    assert len(uids) == len(set(uids)) == 5


def test_every_panel_query_names_a_metric_the_services_export() -> None:
    exported = exported_metric_names()
    checked = 0
    for name, board in dashboards().items():
        for panel in panels(board):
            assert panel["targets"], f"{name}: panel {panel['title']!r} has no query"
            for target in panel["targets"]:  # type: ignore[attr-defined]
                used = metric_names(target["expr"])
                assert used, f"{name}: {panel['title']!r} selects no metric: {target['expr']}"
                assert used <= exported, f"{name}: {panel['title']!r} queries unknown {sorted(used - exported)}"
                checked += 1
    assert checked >= 20


def test_the_signal_flow_panel_follows_every_hop_from_webhook_to_fill() -> None:
    board = dashboards()["signal-flow.json"]
    flow = panels(board)[0]
    exprs = " ".join(t["expr"] for t in flow["targets"])  # type: ignore[attr-defined]
    for hop in (
        "gateway_webhooks_received_total",
        'subject="signals.normalized"',
        "mcp_decisions_generated_total",
        'subject="decisions.order_intent"',
        "exec_sim_fills_generated_total",
    ):
        assert hop in exprs


def test_panels_use_the_provisioned_datasource_and_grafana_loads_the_dashboard_folder() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    for board in dashboards().values():
        for panel in panels(board):
            assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}
            for target in panel["targets"]:  # type: ignore[attr-defined]
                assert target["datasource"]["uid"] == source["uid"]
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "trading-mcp.yml").read_text())
    (provider,) = providers["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = {m.split(":")[1]: m.split(":")[0] for m in compose["services"]["grafana"]["volumes"]}
    assert mounts[provider["options"]["path"]] == "./observability/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./observability/grafana/provisioning"


def test_panels_do_not_overlap_on_the_grid() -> None:
    for name, board in dashboards().items():
        cells: set[tuple[int, int]] = set()
        for panel in panels(board):
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{name}: {panel['title']!r} is wider than the grid"  # type: ignore[index]
            mine = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])  # type: ignore[index]
                for y in range(pos["y"], pos["y"] + pos["h"])  # type: ignore[index]
            }
            assert not cells & mine, f"{name}: {panel['title']!r} overlaps another panel"
            cells |= mine
