"""docs/ERROR_CATALOG.md and the gateway's error codes agree, both ways."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.errors import CODES

CATALOG = Path(__file__).resolve().parents[1] / "docs" / "ERROR_CATALOG.md"


def test_every_gateway_code_is_in_the_catalog_with_its_status_and_nothing_else_is() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", CATALOG.read_text(), flags=re.M)
    documented = {code: int(status) for code, status in rows}
    assert documented == {code: status for code, (status, _) in CODES.items()}
