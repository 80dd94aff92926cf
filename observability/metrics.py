"""Metric definitions. The names listed in ARCHITECTURE.md are part of the contract."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# gateway
gateway_webhooks_received_total = Counter(
    "gateway_webhooks_received_total", "Webhook requests received, by source and outcome", ["source", "outcome"]
)
gateway_webhook_duration_seconds = Histogram(
    "gateway_webhook_duration_seconds", "Webhook handling time", ["source"], buckets=LATENCY_BUCKETS
)
gateway_validation_errors_total = Counter(
    "gateway_validation_errors_total", "Webhooks refused, by error code", ["code"]
)
gateway_nats_errors_total = Counter("gateway_nats_errors_total", "JetStream publishes that failed")

# mcp_server (bridge)
mcp_signals_received_total = Counter("mcp_signals_received_total", "Signals consumed by the bridge", ["symbol"])
mcp_decisions_generated_total = Counter(
    "mcp_decisions_generated_total", "Decisions made by the bridge", ["strategy", "outcome"]
)
mcp_strategy_confidence = Histogram(
    "mcp_strategy_confidence",
    "Confidence of strategy decisions",
    ["strategy"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
mcp_processing_duration_seconds = Histogram(
    "mcp_processing_duration_seconds", "Bridge time from signal to decision", buckets=LATENCY_BUCKETS
)
mcp_active_positions = Gauge("mcp_active_positions", "Symbols with a non-zero position")

# execsim
exec_sim_orders_received_total = Counter(
    "exec_sim_orders_received_total", "Order intents received by the simulator", ["order_type"]
)
exec_sim_fills_generated_total = Counter("exec_sim_fills_generated_total", "Fills generated", ["side"])
exec_sim_simulation_duration_seconds = Histogram(
    "exec_sim_simulation_duration_seconds", "Time to simulate one order", buckets=LATENCY_BUCKETS
)


# mcp_server (MCP tools and the agent loop)
mcp_tool_calls_total = Counter("mcp_tool_calls_total", "MCP tool calls, by tool and outcome", ["tool", "outcome"])
mcp_tool_duration_seconds = Histogram(
    "mcp_tool_duration_seconds", "MCP tool call time in the server", ["tool"], buckets=LATENCY_BUCKETS
)
mcp_agent_decisions_total = Counter(
    "mcp_agent_decisions_total", "Agent loop decisions, by action and outcome", ["action", "outcome"]
)
mcp_agent_tokens_total = Counter("mcp_agent_tokens_total", "Tokens used by the agent loop", ["kind"])


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
