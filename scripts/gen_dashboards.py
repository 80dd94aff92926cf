"""Write the Grafana dashboards (observability/grafana/dashboards/*.json) from the compact definitions below.

    python -m scripts.gen_dashboards          # rewrite the JSON files
    python -m scripts.gen_dashboards --check  # exit 1 if a file differs from what this generates

tests/ops/test_dashboards.py fails when the committed JSON drifts from this file, and when a query
names a metric the services do not export.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "observability" / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yml
RATE = "[$__rate_interval]"
STATE_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "ACTIVE", "color": "green", "index": 0},
            "1": {"text": "REDUCING", "color": "orange", "index": 1},
            "2": {"text": "HALTED", "color": "red", "index": 2},
        },
    }
]


@dataclass
class Panel:
    title: str
    queries: list[tuple[str, str]]  # (expr, legend)
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    options: dict[str, object] = field(default_factory=dict)
    defaults: dict[str, object] = field(default_factory=dict)


def quantiles(metric: str, by: str = "") -> list[tuple[str, str]]:
    labels = f"le{', ' + by if by else ''}"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        (f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{RATE})))", f"p{int(q * 100)}{suffix}")
        for q in (0.5, 0.95, 0.99)
    ]


def published(subject: str) -> str:
    return f'sum(rate(jetstream_publish_duration_seconds_count{{subject="{subject}"}}{RATE}))'


SIGNAL_FLOW = [
    Panel(
        "Signal flow: received → normalized → decided → filled",
        [
            (f"sum(rate(gateway_webhooks_received_total{RATE}))", "webhooks received"),
            (published("signals.normalized"), "signals.normalized stored"),
            (f"sum(rate(mcp_signals_received_total{RATE}))", "consumed by the bridge"),
            (f"sum(rate(mcp_decisions_generated_total{RATE}))", "decided"),
            (published("decisions.order_intent"), "decisions.order_intent stored"),
            (f"sum(rate(exec_sim_fills_generated_total{RATE}))", "filled"),
        ],
        unit="reqps",
        width=24,
        description="Each hop's rate; a gap between two lines is where signals stop.",
    ),
    Panel(
        "Webhook outcomes by code",
        [(f"sum by (outcome) (rate(gateway_webhooks_received_total{RATE}))", "{{outcome}}")],
        unit="reqps",
        description="accepted, duplicate, or the stable error code of docs/ERROR_CATALOG.md",
    ),
    Panel(
        "Consumer lag (pending messages)",
        [
            ("max by (stream, durable) (jetstream_consumer_pending_messages)", "{{durable}} pending"),
            ("max by (stream, durable) (jetstream_consumer_ack_pending_messages)", "{{durable}} unacked"),
        ],
    ),
    Panel(
        "Gateway load shedding (pipeline_behind)",
        [
            ("max(gateway_signal_wait_seconds)", "a new signal would wait (s)"),
            ("max(gateway_signal_backlog)", "slowest reader's backlog (signals)"),
            (f'sum(rate(gateway_webhooks_received_total{{outcome="pipeline_behind"}}{RATE}))', "refused /s"),
        ],
        description="The gateway refuses new signals (503 pipeline_behind) while a live reader of SIGNALS would "
        "make a new one wait over TRADING_MCP_MAX_SIGNAL_WAIT_S (2 s) or is over TRADING_MCP_MAX_SIGNAL_BACKLOG "
        "(1,000) behind; see RUNBOOK, 'The gateway answers pipeline_behind'.",
    ),
    Panel(
        "Publish errors",
        [
            (f"sum by (job, subject) (rate(jetstream_publish_errors_total{RATE}))", "{{job}} {{subject}}"),
            (f"sum(rate(gateway_nats_errors_total{RATE}))", "gateway NATS errors"),
        ],
        unit="reqps",
    ),
    Panel(
        "Signals accepted (24 h)",
        [('sum(increase(gateway_webhooks_received_total{outcome="accepted"}[24h]))', "accepted")],
        kind="stat",
    ),
]

LATENCY = [
    Panel("Webhook handling (gateway)", quantiles("gateway_webhook_duration_seconds"), unit="s"),
    Panel("Signal to decision (bridge)", quantiles("mcp_processing_duration_seconds"), unit="s"),
    Panel("Order simulation (execsim)", quantiles("exec_sim_simulation_duration_seconds"), unit="s"),
    Panel("JetStream publish to ack, by subject", quantiles("jetstream_publish_duration_seconds", "subject"), unit="s"),
]

DECISIONS = [
    Panel(
        "Decisions by strategy and outcome",
        [(f"sum by (strategy, outcome) (rate(mcp_decisions_generated_total{RATE}))", "{{strategy}} {{outcome}}")],
        unit="reqps",
        width=24,
    ),
    Panel(
        "Median confidence by strategy",
        [
            (
                f"histogram_quantile(0.5, sum by (le, strategy) (rate(mcp_strategy_confidence_bucket{RATE})))",
                "{{strategy}}",
            )
        ],
        unit="percentunit",
    ),
    Panel(
        "Confidence distribution",
        [(f"sum by (le) (increase(mcp_strategy_confidence_bucket{RATE}))", "{{le}}")],
        kind="bargauge",
        options={"displayMode": "gradient", "orientation": "vertical"},
    ),
    Panel(
        "Signals consumed and decided by the bridge",
        [
            (f"sum(rate(mcp_signals_received_total{RATE}))", "consumed"),
            (f"sum(rate(mcp_decisions_generated_total{RATE}))", "decided"),
        ],
        unit="reqps",
        width=24,
        description="No per-symbol series: the sender picks the symbol (unbounded); list_signals has them by symbol.",
    ),
]

FILLS_PNL = [
    Panel(
        "Fills by side",
        [(f"sum by (side) (rate(exec_sim_fills_generated_total{RATE}))", "{{side}}")],
        unit="reqps",
    ),
    Panel(
        "Orders received by type",
        [(f"sum by (order_type) (rate(exec_sim_orders_received_total{RATE}))", "{{order_type}}")],
        unit="reqps",
    ),
    Panel("Equity", [("max(portfolio_equity)", "equity")], unit="currencyUSD"),
    Panel("Realized PnL (net of fees)", [("max(portfolio_realized_pnl)", "realized PnL")], unit="currencyUSD"),
    Panel("Active positions", [("max(mcp_active_positions)", "symbols")], kind="stat", width=6),
    Panel("Open orders", [("max(exec_sim_open_orders)", "open orders")], kind="stat", width=6),
    Panel(
        "Fills (24 h)",
        [("sum(increase(exec_sim_fills_generated_total[24h]))", "fills")],
        kind="stat",
        width=12,
    ),
]

# The per-account view: every series labelled `account`, narrowed by the dashboard's `$account` variable.
ACCOUNT = 'account=~"$account"'
ACCOUNTS_COMPARED = "Accounts compared"
ACCOUNT_VARIABLE = {
    "type": "query",
    "name": "account",
    "label": "account",
    "datasource": DATASOURCE,
    "definition": "label_values(portfolio_equity, account)",
    "query": {"query": "label_values(portfolio_equity, account)", "refId": "accounts"},
    "refresh": 2,
    "multi": True,
    "includeAll": True,
    "current": {"text": "All", "value": "$__all"},
    "sort": 1,
}
ACCOUNTS = [
    Panel(
        f"{ACCOUNTS_COMPARED} · equity by account",
        [(f"max by (account) (portfolio_equity{{{ACCOUNT}}})", "{{account}}")],
        unit="currencyUSD",
        description="Cash plus positions marked at the last price, per account.",
    ),
    Panel(
        f"{ACCOUNTS_COMPARED} · return by account",
        [(f"max by (account) (portfolio_return_ratio{{{ACCOUNT}}})", "{{account}}")],
        unit="percentunit",
        description="Equity over the account's starting cash, minus 1. "
        "`trading-mcp accounts compare` gives the same over any window, with Sharpe ratios.",
    ),
    Panel(
        f"{ACCOUNTS_COMPARED} · drawdown by account",
        [(f"max by (account) (portfolio_drawdown_ratio{{{ACCOUNT}}})", "{{account}}")],
        unit="percentunit",
        description="Fall from the highest equity the MCP server has seen since its start, per account.",
    ),
    Panel(
        f"{ACCOUNTS_COMPARED} · orders and denials by account",
        [
            (
                f"sum by (account, outcome) (rate(portfolio_orders_total{{{ACCOUNT}}}{RATE}))",
                "{{account}} {{outcome}}",
            )
        ],
        unit="ops",
        description="Orders admitted and denied by each account's authority, as its journal shows them.",
    ),
]

RISK = [
    Panel(
        "Trading state",
        [("max(risk_trading_state)", "state")],
        kind="stat",
        width=8,
        defaults={"mappings": STATE_MAPPINGS},
        options={"colorMode": "background"},
    ),
    Panel(
        "Drawdown vs limit",
        [("max(portfolio_drawdown_ratio)", "drawdown"), ("max(risk_max_drawdown_ratio)", "limit")],
        unit="percentunit",
        width=16,
    ),
    Panel(
        "Trading state over time",
        [("max(risk_trading_state)", "state")],
        kind="state-timeline",
        width=24,
        height=5,
        defaults={"mappings": STATE_MAPPINGS},
    ),
    Panel(
        "Risk denials",
        [(f'sum by (strategy) (rate(mcp_decisions_generated_total{{outcome="risk_denied"}}{RATE}))', "{{strategy}}")],
        unit="reqps",
        width=24,
    ),
]

DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "signal-flow": ("Signal flow", SIGNAL_FLOW),
    "latency": ("Latency percentiles", LATENCY),
    "decisions": ("Decisions by strategy and confidence", DECISIONS),
    "fills-pnl": ("Fills and PnL", FILLS_PNL + ACCOUNTS),
    "risk": ("Risk state", RISK),
}

VARIABLES: dict[str, list[dict[str, object]]] = {"fills-pnl": [ACCOUNT_VARIABLE]}


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, object]:
    targets = [
        {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
        for i, (expr, legend) in enumerate(panel.queries)
    ]
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": panel.unit, **panel.defaults}, "overrides": []},
        "options": panel.options,
    }


def dashboard(slug: str) -> dict[str, object]:
    title, panels = DASHBOARDS[slug]
    laid_out, x, y, row_height = [], 0, 0, 0
    for i, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append(_panel(panel, i, x, y))
        x, row_height = x + panel.width, max(row_height, panel.height)
    return {
        "uid": f"trading-mcp-{slug}",
        "title": f"trading-mcp · {title}",
        "tags": ["trading-mcp"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": VARIABLES.get(slug, [])},
        "panels": laid_out,
    }


def rendered() -> dict[Path, str]:
    return {
        DASHBOARD_DIR / f"{slug}.json": json.dumps(dashboard(slug), indent=2, ensure_ascii=False) + "\n"
        for slug in DASHBOARDS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args(argv)
    stale = [path for path, text in rendered().items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path} is stale: run python -m scripts.gen_dashboards", file=sys.stderr)
        return 1 if stale else 0
    DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in rendered().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
