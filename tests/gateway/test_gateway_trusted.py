"""What the gateway builds without a second validation holds to the validation it skips: the normalized signal
(`gateway.models._normalized`), the 202 body, the header lookup, the log line's timestamp."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.app import accepted_body
from gateway.body import header_values
from gateway.models import Accepted, GenericSignal, TradingViewAlert
from observability.logging import _fallback, _render_json, _UtcTimestamp
from schemas.signals import NormalizedSignal

decimals = st.one_of(
    st.decimals(min_value="0.0000000001", max_value="9999999999", places=10, allow_nan=False),
    st.integers(min_value=1, max_value=10**9),
    st.sampled_from(["190.25", "1e3", "0.1", "00012.5000"]),
).map(str)
times = st.datetimes(
    min_value=datetime(1971, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds; `timezones` sets the zone
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7))]),
).map(lambda d: d.isoformat())
symbols = st.sampled_from(["AAPL", "btcusd", " msft ", "BRK.B", "ES1!", "EUR/USD", "A" * 32])
texts = st.none() | st.text(max_size=20)
generic = st.fixed_dictionaries(
    {"symbol": symbols, "price": decimals},
    optional={
        "action": st.sampled_from(["buy", "sell", "close"]),
        "quantity": decimals,
        "open": decimals,
        "high": decimals,
        "low": decimals,
        "close": decimals,
        "volume": decimals,
        "interval": st.sampled_from(["1", "1D", "x" * 17]),
        "exchange": texts,
        "comment": texts,
        "time": times | st.integers(min_value=0, max_value=4_000_000_000),
    },
)
tradingview = st.fixed_dictionaries(
    {"ticker": symbols, "close": decimals},
    optional={
        "price": decimals,
        "volume": st.sampled_from(["0", "12", "1.5"]),
        "contracts": decimals,
        "position_size": st.sampled_from(["-3", "0", "2.5"]),
        "market_position": st.sampled_from(["long", "SHORT", "flat"]),
        "action": st.sampled_from(["BUY", "sell"]),
        "order_id": texts,
        "timenow": times,
        "time": times,
        "comment": texts,
    },
)
accounts = st.lists(st.sampled_from(["paper", "momo", "crypto-1", "A_b"]), min_size=1, max_size=3)
NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


def assert_as_validated(built: NormalizedSignal) -> None:
    """`built` is the signal NormalizedSignal's own validation makes of the same values, and dumps the same."""
    again = NormalizedSignal.model_validate(built.model_dump())
    assert built == again
    assert built.model_dump_json() == again.model_dump_json()


def parsed(model: type[Any], payload: dict[str, Any]) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError:
        return None  # the gateway answers 422 and builds nothing


@given(generic, accounts)
def test_a_generic_signal_built_without_validation_equals_the_validated_one(payload: dict, routed: list) -> None:
    signal = parsed(GenericSignal, payload)
    if signal is None:
        return
    built = signal.normalize(
        signal_id="sig_" + "0" * 24,
        source="scripts",
        received_at=NOW,
        correlation_id="f" * 32,
        fired_at=NOW - timedelta(seconds=3),
        accounts=routed,
    )
    assert_as_validated(built)
    assert built.accounts == routed and built.accounts is not routed


@given(tradingview, accounts)
def test_a_tradingview_signal_built_without_validation_equals_the_validated_one(payload: dict, routed: list) -> None:
    alert = parsed(TradingViewAlert, payload)
    if alert is None:
        return
    built = alert.normalize(
        signal_id="sig_" + "1" * 24, source="tradingview", received_at=NOW, correlation_id="c-1", accounts=routed
    )
    assert_as_validated(built)


def test_normalize_without_accounts_feeds_the_default_account() -> None:
    signal = GenericSignal.model_validate({"symbol": "AAPL", "price": "1"})
    built = signal.normalize(signal_id="sig_1", source="s", received_at=NOW, correlation_id="c")
    assert built.accounts == ["paper"]
    assert_as_validated(built)


@pytest.mark.parametrize(
    ("signal_id", "duplicate"), [("sig_abc", False), ("sig_abc", True), ('odd "id" \\ é \u2028', False)]
)
def test_the_accepted_body_is_what_the_model_would_write(signal_id: str, duplicate: bool) -> None:
    accepted = Accepted(signal_id=signal_id, duplicate=duplicate)
    assert json.loads(accepted_body(accepted)) == json.loads(accepted.model_dump_json())
    accepted_body(accepted).decode("ascii")  # every byte ASCII: nothing the client must guess the encoding of


def test_header_values_answer_the_first_of_a_repeated_header_like_starlette() -> None:
    raw = [(b"webhook-id", b"first"), (b"content-length", b"2"), (b"webhook-id", b"second"), (b"x-n", b"\xe9")]
    headers = header_values({"headers": raw})
    assert headers["webhook-id"] == "first" and headers["content-length"] == "2" and headers["x-n"] == "é"
    assert headers.get("idempotency-key") is None


def test_log_timestamps_are_utc_to_the_microsecond_and_move_with_the_clock() -> None:
    stamp = _UtcTimestamp()
    first = stamp(None, "info", {})["timestamp"]
    assert isinstance(first, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first)
    parsed_first = datetime.fromisoformat(first)
    assert abs(parsed_first - datetime.now(UTC)) < timedelta(seconds=2)
    time.sleep(1.01)  # into the next second: the cached date and time must move on
    second = datetime.fromisoformat(str(stamp(None, "info", {})["timestamp"]))
    assert timedelta(seconds=1) <= second - parsed_first < timedelta(seconds=3)


def test_a_log_value_json_cannot_hold_is_written_as_structlog_would() -> None:
    class Custom:
        def __structlog__(self) -> str:
            return "custom!"

    line = json.loads(_render_json(None, "info", {"event": "x", "at": NOW, "obj": Custom(), "n": 1}))
    assert line == {"event": "x", "at": repr(NOW), "obj": "custom!", "n": 1}
    assert _fallback(object()).startswith("<object object")
