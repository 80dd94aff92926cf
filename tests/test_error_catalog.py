"""docs/ERROR_CATALOG.md and the gateway's error codes agree, both ways, and the code raises only catalogued codes."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.errors import CODES
from gateway.openapi import ANY_CODES

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "docs" / "ERROR_CATALOG.md"


def _gateway_section() -> str:
    text = CATALOG.read_text()
    start = text.index("\n## Gateway")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_every_gateway_code_is_in_the_catalog_with_its_status_and_nothing_else_is() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", _gateway_section(), flags=re.M)
    documented = {code: int(status) for code, status in rows}
    assert len(rows) == len(documented), "a code is listed twice"
    assert documented == {code: status for code, (status, _) in CODES.items()}


def test_every_code_the_gateway_raises_is_defined_and_every_defined_code_is_raised() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "gateway").glob("*.py"))
    raised = set(re.findall(r'Problem\(\s*"([a-z_]+)"', source))
    raised |= set(re.findall(r'"([a-z_]+_conflict)",', source))  # Claim(..., conflict_code, ...)
    assert raised == set(CODES)


def test_the_openapi_document_lists_every_webhook_code() -> None:
    webhook_codes = set(CODES) - {"not_found", "method_not_allowed"}
    assert set(ANY_CODES) == webhook_codes


def _mcp_section() -> str:
    text = CATALOG.read_text()
    start = text.index("\n## MCP tools")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_every_mcp_tool_error_code_is_in_the_catalog_and_every_catalogued_one_can_be_raised() -> None:
    documented = re.findall(r"^\| `([a-z_]+)` \|", _mcp_section(), flags=re.M)
    assert len(documented) == len(set(documented)), "a code is listed twice"
    sources = [p.read_text() for p in (ROOT / "mcp_server").rglob("*.py")]
    raised = {code for text in sources for code in re.findall(r'ToolFailure\(\s*"([a-z_]+)"', text)}
    # the order tools pass tools.orders' input error codes through unchanged (`_failure`)
    raised |= set(re.findall(r'OrderInputError\(\s*"([a-z_]+)"', (ROOT / "tools" / "orders.py").read_text()))
    assert set(documented) == raised
