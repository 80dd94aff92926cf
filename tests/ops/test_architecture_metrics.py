"""Every metric named in the architecture is exported and moves when traffic flows: read back from /metrics."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bus.account_view import GAUGES_EVERY_S
from tests.conftest import Pipeline, Webhook, wait_for

# ARCHITECTURE.md, "Metrics (names are part of the contract)"
CONTRACT = {
    "gateway_webhooks_received_total": "counter",
    "gateway_webhook_duration_seconds": "histogram",
    "gateway_validation_errors_total": "counter",
    "gateway_nats_errors_total": "counter",
    "mcp_signals_received_total": "counter",
    "mcp_decisions_generated_total": "counter",
    "mcp_strategy_confidence": "histogram",
    "mcp_processing_duration_seconds": "histogram",
    "mcp_active_positions": "gauge",
    "exec_sim_orders_received_total": "counter",
    "exec_sim_fills_generated_total": "counter",
    "exec_sim_simulation_duration_seconds": "histogram",
}
# metrics that count only failures: present, but this happy path must not move them
FAILURE_ONLY = {"gateway_nats_errors_total"}


def _totals(text: str) -> dict[str, tuple[str, float]]:
    """name -> (type, sum of its counter/_count/gauge samples)."""
    out: dict[str, tuple[str, float]] = {}
    for family in text_string_to_metric_families(text):
        wanted = {"counter": family.name + "_total", "histogram": family.name + "_count", "gauge": family.name}
        key = family.name + "_total" if family.type == "counter" else family.name
        total = sum(s.value for s in family.samples if s.name == wanted.get(family.type))
        out[key] = (family.type, total)
    return out


async def test_every_architecture_metric_is_exported_and_moves_with_a_signal_to_a_fill(
    gateway: Webhook, pipeline: Pipeline
) -> None:
    metrics_url = gateway.url.replace("/webhook", "/metrics")
    async with httpx.AsyncClient() as http:
        before = _totals((await http.get(metrics_url)).text)
        response = await gateway.send(http, {"symbol": "MTRC", "price": "12.5", "action": "buy", "quantity": 3})
        assert response.status_code == 202
        refused = await http.post(gateway.url, content=b"{}", headers={"content-type": "application/json"})
        assert refused.status_code == 401
        await wait_for(lambda: pipeline.state.portfolio.quantity("MTRC") == 3, 5, "the MTRC fill")
        # the account gauges follow the fold within GAUGES_EVERY_S (they are not recomputed for every entry)
        deadline = asyncio.get_running_loop().time() + 5 * GAUGES_EVERY_S
        while True:
            after = _totals((await http.get(metrics_url)).text)
            if after.get("mcp_active_positions", ("gauge", 0.0))[1] >= 1:
                break
            if asyncio.get_running_loop().time() > deadline:
                break  # the assertion below says which
            await asyncio.sleep(0.02)
    for name, kind in CONTRACT.items():
        assert name in after, f"{name} is not exported"
        assert after[name][0] == kind, f"{name} is a {after[name][0]}, the contract says {kind}"
        if name in FAILURE_ONLY:
            continue
        moved = after[name][1] - before.get(name, (kind, 0.0))[1]
        if kind == "gauge":
            assert after[name][1] >= 1, f"{name} did not show the open position"
        else:
            assert moved >= 1, f"{name} did not move with the traffic"
