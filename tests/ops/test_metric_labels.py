"""Metric labels take values from small sets the services fix (sources, outcomes, codes, subjects,
strategies), never from what a sender or client chooses: one series per symbol, id or address would grow
without bound."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from observability import metrics

OBSERVABILITY = Path(__file__).resolve().parents[2] / "observability"
# chosen by whoever sends a webhook, places an order or calls a tool
UNBOUNDED = {"symbol", "ticker", "signal_id", "order_id", "client_order_id", "correlation_id", "principal", "ip"}


def defined_metrics() -> dict[str, MetricWrapperBase]:
    return {name: m for name, m in vars(metrics).items() if isinstance(m, MetricWrapperBase)}


def test_no_metric_is_labelled_by_a_value_a_sender_or_client_chooses() -> None:
    found = defined_metrics()
    assert "mcp_signals_received_total" in found
    for name, metric in found.items():
        assert not set(metric._labelnames) & UNBOUNDED, f"{name} is labelled by {set(metric._labelnames) & UNBOUNDED}"


def test_signals_for_many_symbols_are_counted_in_one_series() -> None:
    before = REGISTRY.get_sample_value("mcp_signals_received_total")
    for _ in range(50):
        metrics.mcp_signals_received_total.inc()
    (family,) = [m for m in REGISTRY.collect() if m.name == "mcp_signals_received"]
    series = [s for s in family.samples if s.name == "mcp_signals_received_total"]
    assert [s.labels for s in series] == [{}]
    assert REGISTRY.get_sample_value("mcp_signals_received_total") == (before or 0) + 50


def test_no_dashboard_or_alert_groups_or_filters_by_symbol() -> None:
    texts = {p.name: p.read_text() for p in (OBSERVABILITY / "grafana" / "dashboards").glob("*.json")}
    texts["alerts.yml"] = (OBSERVABILITY / "alerts.yml").read_text()
    exprs = [
        (name, target["expr"])
        for name, text in texts.items()
        if name.endswith(".json")
        for panel in json.loads(text)["panels"]
        for target in panel["targets"]
    ]
    groups = yaml.safe_load(texts["alerts.yml"])["groups"]
    exprs += [("alerts.yml", rule["expr"]) for group in groups for rule in group["rules"]]
    assert len(exprs) > 20
    for name, expr in exprs:
        assert "symbol" not in expr, f"{name}: {expr}"
