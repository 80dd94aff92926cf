"""Generate docs/API.md from the code: the gateway's OpenAPI document, the subject registry, and the MCP
server's own tools/resources/prompts lists.

    python -m scripts.gen_api_docs          # rewrite docs/API.md
    python -m scripts.gen_api_docs --check  # exit 1 if docs/API.md differs (tests/ops/test_api_docs.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
API_MD = ROOT / "docs" / "API.md"
PLACEHOLDER_SECRET = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQQ=="  # only to build the app; never used

Schema = dict[str, Any]


def _ref(schema: Schema, root: Schema) -> Schema:
    while "$ref" in schema:
        path = schema["$ref"].removeprefix("#/").split("/")
        node: Any = root
        for part in path:
            node = node[part]
        schema = node
    return schema


def type_of(schema: Schema, root: Schema) -> str:
    """A short human form of a JSON Schema type: `string (date-time)`, `number | string`, `array of Fill`."""
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[-1]}`"
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " \\| ".join(dict.fromkeys(type_of(s, root) for s in schema[key]))
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        return " \\| ".join(kind)
    if kind == "array":
        return f"array of {type_of(schema.get('items', {}), root)}"
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return str(kind)


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def fields_table(schema: Schema, root: Schema | None = None) -> list[str]:
    root = root or schema
    schema = _ref(schema, root)
    props: dict[str, Schema] = schema.get("properties", {})
    if not props:
        return ["(no fields)", ""]
    required = set(schema.get("required", []))
    rows = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, prop in props.items():
        limits = [f"{k} {prop[k]}" for k in ("minimum", "maximum", "maxLength", "pattern") if k in prop]
        default = f"default `{json.dumps(prop['default'])}`" if "default" in prop else ""
        detail = "; ".join(filter(None, [_cell(prop.get("description", "")), _cell(", ".join(limits)), default]))
        rows.append(f"| `{name}` | {type_of(prop, root)} | {'yes' if name in required else 'no'} | {detail} |")
    return [*rows, ""]


def fields_with_defs(schema: Schema) -> list[str]:
    """The fields of a schema, then those of each model it refers to (`$defs`)."""
    out = fields_table(schema)
    for name, definition in schema.get("$defs", {}).items():
        if definition.get("properties"):
            out += [f"`{name}`:", "", *fields_table(definition, schema)]
    return out


# ---------------------------------------------------------------- HTTP


def http_section() -> list[str]:
    from gateway.app import create_app
    from gateway.settings import GatewaySettings
    from observability.http import ops_routes

    spec = create_app(GatewaySettings(webhook_secret=PLACEHOLDER_SECRET)).openapi()
    out = [
        "## HTTP",
        "",
        f"### Gateway (`{spec['info']['title']}` {spec['info']['version']}, port 8001)",
        "",
        _cell(spec["info"].get("description", "")),
        "",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            out += [f"#### `{method.upper()} {path}`", "", op.get("description") or op.get("summary", ""), ""]
            body = op.get("requestBody", {}).get("content", {})
            if body:
                out += [f"Request body: {', '.join(f'`{c}`' for c in body)}.", ""]
            out += ["| status | meaning |", "|---|---|"]
            for status, response in op["responses"].items():
                content = response.get("content", {}).get("application/json", {}).get("schema")
                shape = f" — {type_of(content, spec)}" if content else ""
                out.append(f"| {status} | {_cell(response['description'])}{shape} |")
            out.append("")
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        if name in {"HTTPValidationError", "ValidationError"}:
            continue
        out += [f"`{name}`:", "", *fields_table(schema, spec)]
    out += [
        "Errors are `application/problem+json` with a stable `code`: see [ERROR_CATALOG.md](ERROR_CATALOG.md).",
        "",
        "### Operational endpoints (every service: gateway 8001, mcp_server 8002, authority 8003, execsim 8004)",
        "",
        "| method | path | answer |",
        "|---|---|---|",
    ]
    meaning = {
        "/healthz": '200 `{"status": "ok"}` while the process runs',
        "/readyz": '200 when every dependency check passes (`{"ready", "checks"}`), else 503',
        "/metrics": "Prometheus text format (metric names: docs/ARCHITECTURE.md)",
    }

    async def always() -> dict[str, bool]:
        return {}

    for route in ops_routes(always):
        for method in sorted(route.methods or []):
            if method != "HEAD":
                out.append(f"| {method} | `{route.path}` | {meaning.get(route.path, '')} |")
    out += [
        "",
        "### MCP over HTTP (mcp_server, port 8002)",
        "",
        "Streamable HTTP at `/mcp` (`trading-mcp serve --transport streamable-http`), or SSE with "
        "`--transport sse`. The tools, resources and prompts are listed under [MCP](#mcp).",
        "",
    ]
    return out


# ---------------------------------------------------------------- NATS


# Who publishes each registered subject (the simulator ignores intents and cancels without the authority's signature).
WRITERS = {
    "signals.normalized": "gateway",
    "decisions.order_intent": "authority (signed)",
    "decisions.risk_denied": "authority",
    "decisions.order_cancel": "authority (signed)",
    "executions.report": "execsim",
    "executions.fill": "execsim",
    "executions.owner": "execsim (when it takes an account)",
    "decisions.agent": "agent",
}


def nats_section() -> list[str]:
    from schemas.subjects import REGISTRY, STREAMS

    def stream_of(subject: str) -> str:
        return next(s.name for s in STREAMS if any(subject.startswith(p.rstrip(">")) for p in s.subjects))

    out = [
        "## NATS JetStream subjects",
        "",
        "Every message carries the headers `Nats-Msg-Id` (deduplication) and `X-Correlation-ID`. "
        "Bodies are JSON; money, prices and quantities are decimal strings; times are UTC ISO 8601.",
        "",
        "| subject | stream | written by | model | version | JSON Schema |",
        "|---|---|---|---|---|---|",
    ]
    for entry in REGISTRY.values():
        subject = entry.subject.value
        schema_file = f"schemas/json/{subject}.v{entry.version}.json"
        out.append(
            f"| `{subject}` | `{stream_of(subject)}` | {WRITERS[subject]} | `{entry.model.__name__}` | {entry.version} "
            f"| [{schema_file}](../{schema_file}) |"
        )
    out.append("")
    for entry in REGISTRY.values():
        schema = entry.model.model_json_schema(mode="serialization")
        doc = " ".join((entry.model.__doc__ or "").split())
        out += [f"### `{entry.subject.value}` v{entry.version} — `{entry.model.__name__}`", ""]
        out += [doc, ""] if doc else []
        out += fields_with_defs(schema)
    return [*out, *authority_section()]


def authority_section() -> list[str]:
    """The order authority's own subjects: its journal (stream ACCOUNT) and its request/reply subject."""
    from bus.authority_client import REQUEST_TIMEOUT_S
    from bus.authority_key import HEADER
    from bus.journal import EXPECTED_LAST_SEQ
    from schemas.account import (
        ACCOUNT_STREAM,
        DEFAULT_ACCOUNT,
        AccountEvent,
        OrderCommand,
        OrderReply,
        journal_subject,
        request_subject,
    )

    account = "<account>"
    out = [
        "## Order authority subjects",
        "",
        "The account authority (`trading-mcp authority`, port 8003) is the only admitter of orders: it alone "
        "writes the account journal and publishes `decisions.order_intent`, `decisions.order_cancel` (both "
        f"signed: header `{HEADER}`, HMAC-SHA256 of the body; the simulator ignores unsigned ones) and "
        f"`decisions.risk_denied`. `{account}` matches `[A-Za-z0-9_-]{{1,32}}`; the default account is "
        f"`{DEFAULT_ACCOUNT}`.",
        "",
        "| subject | kind | written by | read by | model |",
        "|---|---|---|---|---|",
        f"| `{journal_subject(account)}` | JetStream stream `{ACCOUNT_STREAM}` (the default account) or "
        f"`{ACCOUNT_STREAM}_{account}`, one per account | authority (the account's owner) | every MCP "
        "server, agent and `trading-mcp risk show` (folded in order) | `AccountEvent` |",
        f"| `{request_subject(account)}` | core NATS request/reply, queue group `authority` | bridge, MCP order "
        f"tools, agent (through the tools) | authority | `OrderCommand` → `OrderReply` |",
        "",
        f"### `{journal_subject(account)}` — `AccountEvent`",
        "",
        " ".join((AccountEvent.__doc__ or "").split()),
        "",
        f"Appended with `Nats-Msg-Id` and `{EXPECTED_LAST_SEQ}`: an append by a writer whose view is "
        "behind the journal is refused, so the account never forks. Folding every entry in sequence order "
        "(`tools.account.Account.apply`) gives the authority's projection at that sequence.",
        "",
        *fields_with_defs(AccountEvent.model_json_schema(mode="serialization")),
        f"### `{request_subject(account)}` — `OrderCommand` → `OrderReply`",
        "",
        " ".join((OrderCommand.__doc__ or "").split()),
        "",
        f"No responder, or no reply within {REQUEST_TIMEOUT_S:g} s, is `authority_unavailable` for the caller "
        "(nothing placed; retry with the same `client_order_id`). Reply codes: "
        "[ERROR_CATALOG.md](ERROR_CATALOG.md#order-authority-risk-gate-reason-codes).",
        "",
        *fields_table(OrderCommand.model_json_schema(mode="serialization")),
        "`OrderReply`:",
        "",
        " ".join((OrderReply.__doc__ or "").split()),
        "",
        *fields_table(OrderReply.model_json_schema(mode="serialization")),
    ]
    return out


# ---------------------------------------------------------------- MCP


async def _mcp_lists() -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    from mcp import Client
    from mcp.client import advertise

    from mcp_server.server import build_server

    # every toolset (the opt-in ones too), seen by a client that renders MCP Apps (so the ticket's tool shows)
    server = build_server(None, toolsets_enabled=["all"])  # type: ignore[arg-type]  # listing needs no state
    apps = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})
    async with Client(server, extensions=[apps]) as client:
        return (
            (await client.list_tools()).tools,
            (await client.list_resources()).resources,
            (await client.list_resource_templates()).resource_templates,
            (await client.list_prompts()).prompts,
        )


def _hints(tool: Any) -> str:
    a = tool.annotations
    if a is None:
        return "none"
    names = ("read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint")
    return ", ".join(f"{n.removesuffix('_hint')}={getattr(a, n)}" for n in names if getattr(a, n) is not None)


def mcp_section() -> list[str]:
    tools, resources, templates, prompts = asyncio.run(_mcp_lists())
    out = ["## MCP", "", "### Tools", ""]
    for tool in tools:
        out += [f"#### `{tool.name}`", "", " ".join((tool.description or "").split()), ""]
        out += [f"Annotations: {_hints(tool)}.", "", "Arguments:", "", *fields_table(tool.input_schema)]
        if tool.output_schema:
            out += ["Result (`structured_content`):", "", *fields_with_defs(tool.output_schema)]
    out += ["### Resources", ""]
    out += [f"- `{r.uri}` — {' '.join((r.description or r.name).split())}" for r in resources] or ["(none yet)"]
    out += ["", "### Resource templates", ""]
    out += [f"- `{t.uri_template}` — {' '.join((t.description or t.name).split())}" for t in templates] or [
        "(none yet)"
    ]
    out += ["", "### Prompts", ""]
    for p in prompts:
        args = ", ".join(f"`{a.name}`{'' if a.required else '?'}" for a in (p.arguments or []))
        out.append(f"- `{p.name}`({args}) — {' '.join((p.description or '').split())}")
    if not prompts:
        out.append("(none yet)")
    return [*out, ""]


def render() -> str:
    head = [
        "# API reference",
        "",
        "<!-- Generated by `python -m scripts.gen_api_docs` from the code; do not edit by hand. "
        "tests/ops/test_api_docs.py fails when this file and the code disagree. -->",
        "",
        "- [HTTP](#http) — the gateway (OpenAPI) and the operational endpoints",
        "- [NATS JetStream subjects](#nats-jetstream-subjects) — schemas and versions",
        "- [Order authority subjects](#order-authority-subjects) — the account journal and order requests",
        "- [MCP](#mcp) — tools, resources and prompts",
        "",
    ]
    lines = [*head, *http_section(), *nats_section(), *mcp_section()]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/API.md differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not API_MD.exists() or API_MD.read_text() != text:
            print("docs/API.md is stale: run python -m scripts.gen_api_docs", file=sys.stderr)
            return 1
        return 0
    API_MD.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
