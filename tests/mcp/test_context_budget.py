"""The tool list fits in a model's context, every tool has its title, and schemas stay compact without changing meaning.

The budget is measured on what a real client receives (`tools/list` through an in-memory `mcp.Client`) from a
server built as the tests build it (`build_server` over an offline `AppState`), with the default toolsets:

- model-facing part: per tool, the JSON of exactly {name, title, description, input_schema} (compact separators,
  `ensure_ascii` on), summed over the tools: what an Anthropic-API client sends the model for each tool;
- the whole `tools/list` result: the JSON of the tools as the client parsed them (by alias, without unset fields:
  output schemas and annotations included).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated

import jsonschema
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import Tool
from pydantic import BaseModel, Field

from mcp_server.server import build_server
from mcp_server.tooling import TITLES, MissingToolTitle, add_tools, compact_schema, finish_tools, money, pct, price, qty
from schemas.common import Money
from tests.mcp.helpers import offline_state

MODEL_FACING_BUDGET = 8_000
TOOLS_LIST_BUDGET = 25_000


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def model_facing_chars(tools: list[Tool]) -> int:
    return sum(
        len(_json({"name": t.name, "title": t.title, "description": t.description, "input_schema": t.input_schema}))
        for t in tools
    )


def tools_list_chars(tools: list[Tool]) -> int:
    return len(_json([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]))


async def _listed(**kwargs: object) -> list[Tool]:
    async with Client(build_server(offline_state(), **kwargs)) as client:  # type: ignore[arg-type]
        return (await client.list_tools()).tools


async def test_the_default_tool_list_fits_the_model_facing_and_the_whole_tools_list_budgets() -> None:
    tools = await _listed()
    per_tool = {t.name: model_facing_chars([t]) for t in tools}
    assert model_facing_chars(tools) <= MODEL_FACING_BUDGET, f"over budget; per tool: {per_tool}"
    assert tools_list_chars(tools) <= TOOLS_LIST_BUDGET


async def test_every_tool_of_every_toolset_has_its_title_from_the_one_mapping() -> None:
    tools = await _listed(toolsets_enabled=["all"])
    assert {t.name for t in tools} <= TITLES.keys()
    assert all(t.title == TITLES[t.name] for t in tools)
    assert {t.name: t.title for t in tools if t.name == "preview_order"} == {"preview_order": "Preview an order"}


def _untitled_tool() -> str:
    """A tool nobody gave a title."""
    return "x"


def test_registering_a_tool_without_a_title_fails_at_build_time_naming_the_tool_and_the_mapping() -> None:
    with pytest.raises(
        MissingToolTitle, match=r"'_untitled_tool' has no title: add one to TITLES in mcp_server/tooling"
    ):
        add_tools(MCPServer("t"), _untitled_tool, annotations=None)  # type: ignore[arg-type]
    registered_directly = MCPServer("t")
    registered_directly.add_tool(_untitled_tool)
    with pytest.raises(MissingToolTitle, match="_untitled_tool"):
        finish_tools(registered_directly)


def _keywords(schema: object) -> set[str]:
    """The schema keywords used anywhere in `schema` (property and definition names are not keywords)."""
    if isinstance(schema, list):
        return set().union(*map(_keywords, schema)) if schema else set()
    if not isinstance(schema, dict):
        return set()
    out = set(schema)
    for key, value in schema.items():
        if key in ("properties", "$defs") and isinstance(value, dict):
            out |= set().union(*map(_keywords, value.values())) if value else set()
        elif key not in ("default", "enum", "const", "required"):
            out |= _keywords(value)
    return out


async def test_schemas_carry_no_titles_and_output_schemas_no_descriptions() -> None:
    for tool in await _listed(toolsets_enabled=["all"]):
        assert "title" not in _keywords(tool.input_schema), tool.name
        assert not {"title", "description"} & _keywords(tool.output_schema), tool.name
        assert '"anyOf":[{"type":"number"},{"type":"string"}]' not in _json(tool.output_schema), tool.name


class _Sample(BaseModel):
    """A docstring that becomes a description."""

    price: Money
    limit: Annotated[Decimal | None, Field(gt=0, le=10, description="at most 10")] = None
    note: Annotated[str | None, Field(pattern="^[a-z]+$")] = None
    when: Annotated[int | str, Field(description="either")] = 0


@pytest.mark.parametrize(
    "instance",
    [
        {"price": "1.5"},
        {"price": 2, "limit": 10, "note": "abc"},
        {"price": 1, "limit": 0},
        {"price": 1, "limit": 11},
        {"price": 1, "limit": "5"},
        {"price": 1, "note": "ABC"},
        {"price": None},
        {"price": 1, "when": 2.5},
        {},
    ],
)
def test_a_compacted_schema_accepts_and_refuses_exactly_what_the_original_does(instance: dict[str, object]) -> None:
    original = _Sample.model_json_schema()
    compact = compact_schema(original, descriptions=False)
    assert "title" not in _json(compact) and "anyOf" not in _json(compact["properties"]["limit"])
    assert jsonschema.Draft202012Validator(compact).is_valid(instance) == jsonschema.Draft202012Validator(
        original
    ).is_valid(instance)


def test_text_formatters_show_money_with_two_decimals_prices_as_given_and_ratios_as_percentages() -> None:
    assert [money(Decimal("157612.585800")), money(Decimal("-0.001")), money(Decimal(1000))] == [
        "157612.59",
        "0.00",
        "1000.00",
    ]
    assert [price(Decimal("190.25")), price(Decimal("190.50")), price(Decimal("190.333333"))] == [
        "190.25",
        "190.50",
        "190.3333",
    ]
    assert [qty(Decimal("1E+2")), qty(Decimal("10.0000000000")), qty(Decimal("0.5"))] == ["100", "10", "0.5"]
    assert [pct(0.123), pct(-0.05, signed=True), pct(None)] == ["12.3 %", "-5.0 %", "n/a"]
