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
gateway_signal_backlog = Gauge(
    "gateway_signal_backlog",
    "Signals the slowest live durable reader of SIGNALS has yet to take or acknowledge, at the last reading "
    "(gateway.backlog; read only while webhooks arrive)",
)
gateway_signal_wait_seconds = Gauge(
    "gateway_signal_wait_seconds",
    "The longest wait a signal accepted now would have before a live durable reader of SIGNALS takes it: its "
    "backlog over the rate it acknowledges at, at the last reading (gateway.backlog)",
)
# webhook outcomes by code: gateway_webhooks_received_total{outcome} holds "accepted", "duplicate" or the error code

# mcp_server (bridge)
# No symbol label: the sender picks the symbol, so it would make one series per name anyone sends.
mcp_signals_received_total = Counter("mcp_signals_received_total", "Signals consumed by the bridge")
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
mcp_active_positions = Gauge("mcp_active_positions", "Symbols with a non-zero position", ["account"])

# risk and portfolio (defined here; set by the risk engine / portfolio owners)
TRADING_STATES = {"ACTIVE": 0, "REDUCING": 1, "HALTED": 2}
risk_trading_state = Gauge("risk_trading_state", "Trading state: 0 ACTIVE, 1 REDUCING, 2 HALTED")
risk_max_drawdown_ratio = Gauge("risk_max_drawdown_ratio", "Configured drawdown limit, as a fraction of peak equity")
portfolio_equity = Gauge(
    "portfolio_equity", "Account equity: cash plus positions marked at the last price", ["account"]
)
portfolio_realized_pnl = Gauge("portfolio_realized_pnl", "Realized PnL net of fees, all symbols", ["account"])
portfolio_drawdown_ratio = Gauge(
    "portfolio_drawdown_ratio", "Drawdown from peak equity, as a fraction of the peak", ["account"]
)
# per account (the `account` label: ids match schemas.common.ACCOUNT_PATTERN, fixed by the operator's configuration)
portfolio_return_ratio = Gauge(
    "portfolio_return_ratio", "Equity over the starting cash, minus 1 (0.05 is +5 %)", ["account"]
)
portfolio_orders_total = Counter(
    "portfolio_orders_total",
    "Orders of the account as its folded journal shows them, by outcome (admitted, denied)",
    ["account", "outcome"],
)

# execsim
exec_sim_orders_received_total = Counter(
    "exec_sim_orders_received_total", "Order intents received by the simulator", ["order_type"]
)
exec_sim_fills_generated_total = Counter("exec_sim_fills_generated_total", "Fills generated", ["side"])
exec_sim_simulation_duration_seconds = Histogram(
    "exec_sim_simulation_duration_seconds", "Time to simulate one order", buckets=LATENCY_BUCKETS
)
exec_sim_open_orders = Gauge("exec_sim_open_orders", "Orders resting in the simulator (not yet ended)")
exec_sim_reports_total = Counter("exec_sim_reports_total", "Order lifecycle events published", ["status"])
exec_sim_rebuilds_total = Counter("exec_sim_rebuilds_total", "Times the simulator rebuilt its state from the streams")
exec_sim_rebuild_seconds = Histogram(
    "exec_sim_rebuild_seconds",
    "Time to rebuild an account's engine from its snapshot and the streams' tails (start, takeover, failed publish)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
exec_sim_snapshot_seconds = Histogram(
    "exec_sim_snapshot_seconds",
    "Time to fold the streams' tails into the account's simulator snapshot and store it",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
exec_sim_unsigned_commands_total = Counter(
    "exec_sim_unsigned_commands_total",
    "Order intents and cancels ignored: the order authority's signature was missing or wrong",
    ["subject"],
)
exec_sim_bars_refused_total = Counter(
    "exec_sim_bars_refused_total",
    "Bars refused for fills: older than the symbol's latest bar, or that bar again (duplicate)",
    ["reason"],
)

# bus (every service that publishes or consumes)
jetstream_publish_duration_seconds = Histogram(
    "jetstream_publish_duration_seconds",
    "Time from publish to the JetStream ack, by subject",
    ["subject"],
    buckets=LATENCY_BUCKETS,
)
jetstream_publish_errors_total = Counter(
    "jetstream_publish_errors_total", "JetStream publishes that failed (timeout, no responders, closed)", ["subject"]
)
jetstream_consumer_pending_messages = Gauge(
    "jetstream_consumer_pending_messages",
    "Messages in the stream not yet delivered to the durable consumer (lag)",
    ["stream", "durable"],
)
jetstream_consumer_ack_pending_messages = Gauge(
    "jetstream_consumer_ack_pending_messages",
    "Messages delivered to the durable consumer and not yet acked",
    ["stream", "durable"],
)
jetstream_consumer_lag_errors_total = Counter(
    "jetstream_consumer_lag_errors_total", "Consumer-info reads that failed", ["stream", "durable"]
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


# the account authority (the one order admission per account)
authority_requests_total = Counter(
    "authority_requests_total", "Order requests answered by the authority, by kind and answer code", ["kind", "code"]
)
authority_decision_seconds = Histogram(
    "authority_decision_seconds", "Authority time from request to reply", buckets=LATENCY_BUCKETS
)
authority_journal_appends_total = Counter(
    "authority_journal_appends_total", "Entries appended to the account journal, by kind", ["kind"]
)
authority_journal_append_seconds = Histogram(
    "authority_journal_append_seconds", "Time to append one journal entry", buckets=LATENCY_BUCKETS
)
authority_stale_executions_total = Counter(
    "authority_stale_executions_total",
    "Reports and fills voided because a newer simulator owner (a higher lease fence) took the account",
)
authority_journal_conflicts_total = Counter(
    "authority_journal_conflicts_total", "Appends refused because the journal moved (another writer)"
)
authority_marks_refused_total = Counter(
    "authority_marks_refused_total", "Marks older than the symbol's latest known bar, not applied"
)
authority_republished_total = Counter(
    "authority_republished_total", "Admitted intents re-published because the simulator had not acknowledged them"
)
