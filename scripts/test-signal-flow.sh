#!/usr/bin/env bash
# Send one signed signal to a running stack and follow it to a fill, printing each hop:
#   gateway 202 -> signals.normalized in SIGNALS -> decisions.order_intent -> executions.fill -> get_positions (MCP HTTP)
# Exits 1 naming the first hop that did not happen within FLOW_TIMEOUT seconds (default 20).
#
# Settings (environment, or the same names as --flags: see --help):
#   GATEWAY_URL   default http://127.0.0.1:8001
#   MCP_URL       default http://127.0.0.1:8002/mcp
#   NATS_URL      default nats://127.0.0.1:4222 (the script reads the streams to see each hop)
#   TRADING_MCP_WEBHOOK_SECRET  the whsec_ secret, or TRADING_MCP_DATA_DIR holding webhook_secret
#   TRADING_MCP_AUTH_TOKEN       bearer token of the MCP server, when it requires one
#   FLOW_SYMBOL (FLOWTEST), FLOW_PRICE (100.00), FLOW_QUANTITY (1): the paper order it places
#   PYTHON        the interpreter that has trading-mcp installed (default: the one beside trading-mcp)
#
# Against `trading-mcp up` (embedded NATS):
#   NATS_URL=nats://127.0.0.1:$(python -c 'import json;print(json.load(open("'"$HOME"'/.local/share/trading-mcp/nats.json"))["port"])') \
#   TRADING_MCP_DATA_DIR=~/.local/share/trading-mcp scripts/test-signal-flow.sh
# In the compose stack: see docker-compose.test.yml.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ -z "${PYTHON:-}" ]]; then
  if command -v trading-mcp >/dev/null 2>&1; then
    PYTHON="$(dirname "$(command -v trading-mcp)")/python"
  elif [[ -x "$here/../.venv/bin/python" ]]; then
    PYTHON="$here/../.venv/bin/python"
  else
    PYTHON=python3
  fi
fi

echo "following one signal: gateway ${GATEWAY_URL:-http://127.0.0.1:8001} · NATS ${NATS_URL:-nats://127.0.0.1:4222} · MCP ${MCP_URL:-http://127.0.0.1:8002/mcp}"
exec "$PYTHON" "$here/signal_flow.py" "$@"
