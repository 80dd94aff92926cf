"""The exported JSON Schema files in schemas/json/ match the models."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas.orders import Fill
from schemas.subjects import JSON_DIR, REGISTRY, json_schema_files


def test_exported_json_schemas_match_the_models() -> None:
    expected = json_schema_files()
    on_disk = {p.name: p.read_text() for p in JSON_DIR.glob("*.json")}
    assert on_disk == expected, "run `python -m schemas.subjects` to regenerate schemas/json/"


def test_every_subject_has_a_versioned_model() -> None:
    for subject, entry in REGISTRY.items():
        assert entry.subject is subject and entry.version >= 1
        assert "schema_version" in entry.model.model_fields


def test_money_travels_as_decimal_strings_and_naive_times_are_refused() -> None:
    from datetime import UTC, datetime

    fill = Fill(
        fill_id="f",
        client_order_id="c",
        symbol="AAPL",
        side="buy",
        quantity=Decimal("1.5"),
        price=Decimal("190.25"),
        fee=Decimal("0.01"),
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        correlation_id="x",
    )
    assert '"price":"190.25"' in fill.model_dump_json()
    with pytest.raises(ValidationError):
        Fill(
            fill_id="f",
            client_order_id="c",
            symbol="AAPL",
            side="buy",
            quantity=Decimal(1),
            price=Decimal(1),
            fee=Decimal(0),
            ts=datetime(2026, 1, 1),  # noqa: DTZ001
            correlation_id="x",
        )
    with pytest.raises(ValidationError):
        Fill(
            fill_id="f",
            client_order_id="c",
            symbol="AAPL",
            side="buy",
            quantity=Decimal("NaN"),
            price=Decimal(1),
            fee=Decimal(0),
            ts=datetime(2026, 1, 1, tzinfo=UTC),
            correlation_id="x",
        )
