"""docs/API.md is exactly what scripts/gen_api_docs.py generates from the code, so it cannot drift."""

from __future__ import annotations

import asyncio

from schemas.subjects import REGISTRY
from scripts import gen_api_docs


def test_docs_api_md_matches_the_text_generated_from_the_code() -> None:
    assert gen_api_docs.API_MD.read_text() == gen_api_docs.render(), (
        "docs/API.md is stale: run python -m scripts.gen_api_docs"
    )


def test_the_generated_reference_covers_the_webhook_every_subject_and_every_mcp_tool() -> None:
    text = gen_api_docs.render()
    assert "#### `POST /webhook`" in text and "| 401 |" in text and "| 503 |" in text
    for entry in REGISTRY.values():
        assert f"### `{entry.subject.value}` v{entry.version} — `{entry.model.__name__}`" in text
    tools, _, _, _ = asyncio.run(gen_api_docs._mcp_lists())
    assert tools, "the MCP server lists no tools"
    for tool in tools:
        assert f"#### `{tool.name}`" in text


def test_the_field_tables_show_required_fields_types_and_limits() -> None:
    table = "\n".join(
        gen_api_docs.fields_table(
            {
                "properties": {
                    "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50, "description": "Most"},
                    "side": {"enum": ["buy", "sell"]},
                },
                "required": ["side"],
            }
        )
    )
    assert "| `limit` | integer | no | Most; minimum 1, maximum 500; default `50` |" in table
    assert '| `side` | `"buy"` \\| `"sell"` | yes |  |' in table
