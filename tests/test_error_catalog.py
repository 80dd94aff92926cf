"""docs/ERROR_CATALOG.md and the code agree, both ways: the gateway's error codes, the MCP tool error codes and the
order authority's answer codes; the code raises only catalogued codes."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.errors import CODES
from gateway.openapi import ANY_CODES
from mcp_server.toolsets.orders import INPUT_ERRORS

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "docs" / "ERROR_CATALOG.md"


def _section(heading: str) -> str:
    text = CATALOG.read_text()
    start = text.index(f"\n## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _codes_in(section: str) -> list[str]:
    return re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M)


def test_every_gateway_code_is_in_the_catalog_with_its_status_and_nothing_else_is() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", _section("Gateway"), flags=re.M)
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


def test_every_mcp_tool_error_code_is_in_the_catalog_and_every_catalogued_one_can_be_raised() -> None:
    documented = _codes_in(_section("MCP tools"))
    assert len(documented) == len(set(documented)), "a code is listed twice"
    sources = [p.read_text() for p in (ROOT / "mcp_server").rglob("*.py")]
    raised = {code for text in sources for code in re.findall(r'ToolFailure\(\s*"([a-z_]+)"', text)}
    # the order tools pass the authority's input-error codes through unchanged (`_failure`)
    raised |= INPUT_ERRORS
    assert set(documented) == raised


def _authority_codes() -> set[str]:
    """Every code the account authority can answer: the gate's and the admission rule's verdicts, the
    admission rule's replies, and the service's own answers."""
    gate = (ROOT / "tools" / "risk.py").read_text()
    rule = (ROOT / "tools" / "account.py").read_text()
    service = (ROOT / "authority" / "service.py").read_text()
    codes: set[str] = set()
    for text in (gate, rule):
        codes |= set(re.findall(r'Verdict\(\s*False,\s*"([a-z_]+)"', text))
        # bad_number: code = "invalid_quantity" if ... else "invalid_price"
        for pair in re.findall(r'code = "([a-z_]+)" if .+? else "([a-z_]+)"', text):
            codes |= set(pair)
    codes |= set(re.findall(r'_reply\(\s*\w+,\s*(?:True|False),\s*"([a-z_]+)"', rule))
    codes |= set(re.findall(r'\bcode="([a-z_]+)"', service))
    return codes


def test_the_authority_code_scan_finds_the_codes_it_must() -> None:
    codes = _authority_codes()
    must = {"approved", "duplicate", "cancel_requested", "trading_halted", "max_position", "order_rate"}
    must |= {"stale_signal", "invalid_quantity", "invalid_price", "invalid_order", "authority_unavailable"}
    assert must <= codes


def test_every_code_the_order_authority_answers_is_in_the_catalog_and_every_catalogued_one_is_answered() -> None:
    documented = _codes_in(_section("Order authority"))
    assert len(documented) == len(set(documented)), "a code is listed twice"
    assert set(documented) == _authority_codes()


def test_every_order_tool_input_error_is_an_authority_answer() -> None:
    assert _authority_codes() >= INPUT_ERRORS
