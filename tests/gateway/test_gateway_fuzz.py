"""Property and fuzz tests: no input yields a 5xx, and nothing is published without valid authentication."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from bus.embedded import EmbeddedNats
from gateway import signing
from tests.gateway.kit import SECRET, TV_SECRET, Gateway, count_signals, gateway_in_thread, settings_for

FIELDS = ["symbol", "price", "action", "quantity", "open", "close", "volume", "time", "comment", "ticker", "secret"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["AAPL", "buy", "sell", "close", "1e400", "NaN", "-0", "0.00000000001", "2026-01-02T14:30:00Z"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
objects = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=8)
signal_like = st.fixed_dictionaries(
    {"symbol": st.sampled_from(["AAPL", "btcusd", "", "A" * 40, "ES1!"]), "price": scalars},
    optional={"action": scalars, "quantity": scalars, "time": scalars, "comment": st.text(max_size=600)},
)
bodies = st.one_of(
    st.binary(max_size=300),
    objects.map(lambda o: json.dumps(o).encode()),
    signal_like.map(lambda o: json.dumps(o).encode()),
)
AUTH = ["none", "garbage", "wrong_secret", "valid", "valid_but_skewed"]


@pytest.fixture
def threaded_gateway(nats_server: EmbeddedNats) -> Iterator[Gateway]:
    with gateway_in_thread(settings_for(nats_server.url)) as gw:
        yield gw


def _headers(gw: Gateway, auth: str, body: bytes, garbage: str, skew: int) -> dict[str, str]:
    msg_id = f"msg_{time.monotonic_ns()}"
    ts = gw.now() + (skew if auth == "valid_but_skewed" else 0)
    if auth == "none":
        return {}
    if auth == "garbage":
        garbage = garbage.strip()  # a header value may not start or end with blanks (the client refuses)
        return {
            "webhook-id": garbage or "x",
            "webhook-timestamp": garbage or "1",
            "webhook-signature": garbage or "v1,",
        }
    secret = signing.new_secret() if auth == "wrong_secret" else SECRET
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signing.sign(secret, msg_id, ts, body),
    }


def test_no_input_yields_a_5xx_or_a_publish_without_valid_authentication(
    threaded_gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    gw = threaded_gateway
    accepted: set[str] = set()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        path=st.sampled_from(
            ["/webhook", "/webhook/tradingview", "/webhook/limited", "/webhook/x%00y", "/webhook/a/b"]
        ),
        auth=st.sampled_from(AUTH),
        body=bodies,
        tv_secret=st.sampled_from([None, TV_SECRET, "guess-guess-guess-guess"]),
        garbage=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
        skew=st.sampled_from([-100000, -301, 301, 99999999999]),
        content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
    )
    def one_request(
        path: str, auth: str, body: bytes, tv_secret: str | None, garbage: str, skew: int, content_type: str
    ) -> None:
        if path.endswith("tradingview") and tv_secret is not None:
            try:
                obj = json.loads(body)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                body = json.dumps({**obj, "secret": tv_secret}).encode()
        headers = {"content-type": content_type, **_headers(gw, auth, body, garbage, skew)}
        with httpx.Client(timeout=10) as client:
            response = client.post(gw.base + path, content=body, headers=headers)
        assert response.status_code < 500, response.text
        if response.status_code == 202:
            if path.endswith("tradingview"):
                assert json.loads(body).get("secret") == TV_SECRET
            else:
                assert auth == "valid"
            accepted.add(response.json()["signal_id"])
        else:
            assert response.headers["content-type"] == "application/problem+json"

    one_request()
    assert count_signals(nats_server.url) == len(accepted)


def test_every_documented_operation_answers_as_documented_and_never_5xx(threaded_gateway: Gateway) -> None:
    schema = schemathesis.openapi.from_url(f"{threaded_gateway.base}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6

    for operation in operations:

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            case.call_and_validate(checks=checks)

        call()
