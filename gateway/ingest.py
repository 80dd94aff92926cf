"""One webhook, from raw bytes to a stored signal: authenticate, limit, parse, validate, claim, publish.

Each step raises `Problem` (a stable code) and changes nothing; only `_deliver` touches NATS, and it
answers 202 only after the JetStream ack. A signed webhook without an Idempotency-Key costs one NATS
round trip: the publish, deduplicated by JetStream on its `Nats-Msg-Id` (gateway.replay says why that
is enough); only a duplicate costs a second, to compare its body with the stored original's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from bus.jetstream import publish_bytes
from gateway import replay, signing
from gateway.backlog import Backlog
from gateway.client_ip import allowed, client_ip
from gateway.errors import Problem
from gateway.models import Accepted, GenericSignal, TradingViewAlert
from gateway.ratelimit import RateLimiter
from gateway.settings import GatewaySettings
from gateway.sources import SourceConfig
from observability import metrics
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tools.clock import Clock

SECRET_FIELD = "secret"
MAX_ID_LENGTH = 256
MAX_SIGNATURE_HEADER = 4096
M = TypeVar("M", bound=BaseModel)
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_HEADER_VALUE = re.compile(rf"^[\x21-\x7e]{{1,{MAX_ID_LENGTH}}}$")
BODY_HASH_HEADER = "Gateway-Body-Sha256"  # on every stored signal: tells a resend from a conflicting reuse of its id
SIGNALS_STREAM = "SIGNALS"
WEBHOOK_ID_CONFLICT = (
    "webhook_id_conflict",
    "this webhook-id was already used with a different body; use a new webhook-id for a new signal",
)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


class _DuplicateMember(ValueError):
    pass


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _DuplicateMember(name)
            seen.add(name)
    return obj


def parse_object(body: bytes) -> dict[str, Any]:
    """JSON from the raw bytes whatever the Content-Type; numbers become Decimal, NaN/Infinity are refused, and
    so is a member name used twice in one object (parsers disagree on which value wins)."""
    try:
        payload = json.loads(body, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_unique_members)
    except _DuplicateMember as exc:
        raise Problem(
            "malformed_json", f"the member {str(exc)[:64]!r} appears twice in one object; send each name once"
        ) from None
    except RecursionError:
        raise Problem("malformed_json", "the body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN, over-long integers
        raise Problem("malformed_json", f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(payload, dict):
        raise Problem("malformed_json", "the body must be a JSON object")
    return payload


def validate(model: type[M], payload: dict[str, Any]) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]} for e in exc.errors()]
        fields = ", ".join(e["field"] for e in errors)
        raise Problem("schema_violation", f"invalid fields: {fields}", errors=errors) from None


def _sha(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def webhook_signal_id(source: str, webhook_id: str) -> str:
    return "sig_" + _sha(source, webhook_id)[:24]


def idempotency_signal_id(source: str, key: str) -> str:
    return "sig_" + _sha("idempotency", source, key)[:24]


def idempotency_claim_key(source: str, key: str) -> str:
    """The `idempotency_keys` KV key of an Idempotency-Key."""
    return "idem_" + _sha(source, key)[:40]


def tradingview_content(payload: dict[str, Any]) -> str:
    """Canonical text of the alert (secret already removed): every member, sorted, numbers as written."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def tradingview_signal_id(source: str, content: str) -> str:
    return "sig_" + _sha("tradingview", source, content)[:24]


@dataclass(frozen=True, slots=True)
class Original:
    """What a duplicate's stored original says about itself."""

    signal_id: str
    body_hash: str | None  # None: stored without the header (by an older gateway)


@dataclass(slots=True)
class Claim:
    kv: KeyValue
    key: str
    conflict_code: str
    conflict_detail: str
    remember_stored: bool


_UNBOUNDED = contextlib.nullcontext()


def unavailable(retry_after_s: int, detail: str = "the signal was not stored; retry later") -> Problem:
    return Problem("nats_unavailable", detail, headers={"Retry-After": str(retry_after_s)})


class Ingest:
    def __init__(
        self,
        settings: GatewaySettings,
        clock: Clock,
        nc: NATS,
        js: JetStreamContext,
        seen: KeyValue,
        idempotency: KeyValue,
        *,
        stream_dedupes_webhook_ids: bool = True,
        backlog: Backlog | None = None,
    ) -> None:
        """`stream_dedupes_webhook_ids`: the SIGNALS duplicate window covers 2 x tolerance, so a resent
        webhook-id needs no claim in `seen` (gateway.replay). `backlog`: load shedding (gateway.backlog), checked
        once a signal is valid, before anything is claimed or published."""
        self.settings = settings
        self.clock = clock
        self.nc = nc
        self.js = js
        self.seen = seen
        self.idempotency = idempotency
        self.stream_dedupes_webhook_ids = stream_dedupes_webhook_ids
        self.backlog = backlog
        self.limiter = RateLimiter(clock, settings.sources)
        self.proxies = settings.proxy_networks
        self.networks = {s.name: s.networks for s in settings.sources}

    # ------------------------------------------------------------------ per-request steps

    def check_address(self, source: SourceConfig, request: Request) -> None:
        networks = self.networks[source.name]
        if not networks:
            return
        peer = request.client.host if request.client else None
        ip = client_ip(peer, request.headers.getlist("x-forwarded-for"), self.proxies)
        if not allowed(ip, networks):
            raise Problem("ip_not_allowed", f"address {ip or 'unknown'} may not send to source {source.name!r}")

    def _rate_limit(self, source: SourceConfig) -> None:
        wait = self.limiter.wait_s(source.name)
        if wait > 0:
            raise Problem(
                "rate_limited",
                f"source {source.name!r} is limited to {source.rate_per_s}/s; retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def _idempotency_claim(self, source: SourceConfig, headers: Mapping[str, str]) -> tuple[Claim, str] | None:
        key = headers.get("idempotency-key")
        if key is None:
            return None
        if not _HEADER_VALUE.match(key):
            raise Problem("invalid_header", f"Idempotency-Key must be 1-{MAX_ID_LENGTH} visible ASCII characters")
        claim = Claim(
            self.idempotency,
            idempotency_claim_key(source.name, key),
            "idempotency_key_conflict",
            "this Idempotency-Key was already used with a different body; use a new key for a new signal",
            remember_stored=True,
        )
        return claim, idempotency_signal_id(source.name, key)

    def _check_symbol(self, source: SourceConfig, symbol: str) -> None:
        if source.allowed_symbols is not None and symbol not in source.allowed_symbols:
            raise Problem("symbol_not_allowed", f"source {source.name!r} may not send signals for {symbol}")

    # ------------------------------------------------------------------ the two auth modes

    async def standard(self, source: SourceConfig, headers: Mapping[str, str], body: bytes, cid: str) -> Accepted:
        webhook_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        signature = headers.get("webhook-signature")
        if not (webhook_id and timestamp and signature):
            raise Problem(
                "missing_signature_headers",
                "send webhook-id, webhook-timestamp and webhook-signature (Standard Webhooks)",
            )
        if not _HEADER_VALUE.match(webhook_id):
            raise Problem("invalid_header", f"webhook-id must be 1-{MAX_ID_LENGTH} visible ASCII characters")
        if not _TIMESTAMP.match(timestamp):
            raise Problem("timestamp_out_of_tolerance", "webhook-timestamp must be unix seconds")
        ts = int(timestamp)
        if len(signature) > MAX_SIGNATURE_HEADER or not signing.verify(
            list(source.secrets), webhook_id, ts, body, signature
        ):
            raise Problem("invalid_signature", "no signature matches an active secret for this source")
        now = self.clock.now()
        if abs(now.timestamp() - ts) > self.settings.tolerance_s:
            raise Problem(
                "timestamp_out_of_tolerance",
                f"webhook-timestamp is more than {self.settings.tolerance_s} s away from the server clock",
            )
        self._rate_limit(source)
        signal = validate(GenericSignal, parse_object(body))
        self._check_symbol(source, signal.symbol)
        accounts = source.accounts_for(signal.symbol)
        idem = self._idempotency_claim(source, headers)

        body_hash = hashlib.sha256(body).hexdigest()
        webhook_key = webhook_signal_id(source.name, webhook_id)
        claims = []
        if not self.stream_dedupes_webhook_ids:
            claims.append(Claim(self.seen, webhook_key, *WEBHOOK_ID_CONFLICT, remember_stored=False))
        signal_id = webhook_key
        if idem is not None:
            claims.insert(0, idem[0])
            signal_id = idem[1]

        fired_at = datetime.fromtimestamp(ts, UTC)  # verified: signed and within tolerance

        def build(sid: str) -> NormalizedSignal:
            return signal.normalize(
                signal_id=sid,
                source=source.name,
                received_at=now,
                correlation_id=cid,
                fired_at=fired_at,
                accounts=accounts,
            )

        # Nats-Msg-Id is the webhook's, also under an Idempotency-Key (which the signature does not cover):
        # a replay of this request with the key changed or removed is then still dropped by JetStream.
        return await self._deliver(claims, signal_id, webhook_key, body_hash, build, cid, WEBHOOK_ID_CONFLICT)

    async def tradingview(self, source: SourceConfig, headers: Mapping[str, str], body: bytes, cid: str) -> Accepted:
        payload = parse_object(body)
        offered = payload.pop(SECRET_FIELD, None)
        if not isinstance(offered, str) or not offered:
            raise Problem("invalid_secret", f"put the source's secret in the {SECRET_FIELD!r} member of the JSON")
        match = False
        for secret in source.secrets:
            match |= hmac.compare_digest(offered.encode(), secret.encode())
        if not match:
            raise Problem("invalid_secret", f"the {SECRET_FIELD!r} member does not match this source's secret")
        self._rate_limit(source)
        alert = validate(TradingViewAlert, payload)
        self._check_symbol(source, alert.ticker)
        accounts = source.accounts_for(alert.ticker)
        idem = self._idempotency_claim(source, headers)

        content = tradingview_content(payload)
        body_hash = hashlib.sha256(content.encode()).hexdigest()
        content_id = tradingview_signal_id(source.name, content)
        # No id or timestamp of the sender's bounds how late TradingView resends an alert: its content id is
        # remembered as long as an Idempotency-Key (24 h), and marked stored, so a late resend publishes nothing.
        claims = [
            Claim(
                self.idempotency,
                content_id,
                "webhook_id_conflict",
                "unreachable: the content id covers the whole body",
                remember_stored=True,
            )
        ]
        signal_id = content_id
        if idem is not None:
            claims.insert(0, idem[0])
            signal_id = idem[1]
        now = self.clock.now()

        def build(sid: str) -> NormalizedSignal:
            return alert.normalize(
                signal_id=sid, source=source.name, received_at=now, correlation_id=cid, accounts=accounts
            )

        conflict = (claims[0].conflict_code, claims[0].conflict_detail)  # the claim whose id is the message id
        return await self._deliver(claims, signal_id, signal_id, body_hash, build, cid, conflict)

    # ------------------------------------------------------------------ claim + publish

    async def _deliver(
        self,
        claims: list[Claim],
        signal_id: str,
        msg_id: str,
        body_hash: str,
        build: Callable[[str], NormalizedSignal],
        cid: str,
        reused_id: tuple[str, str],
    ) -> Accepted:
        """Claim, publish under `msg_id`, answer. `reused_id`: the problem (code, detail) when JetStream
        already holds a message with this id and another body."""
        retry = self.settings.retry_after_s
        if not self.nc.is_connected:
            metrics.gateway_nats_errors_total.inc()
            raise unavailable(retry, "NATS is not connected; the signal was not stored; retry later")
        if self.backlog is not None:
            self.backlog.check()
        # Claims run in order (Idempotency-Key first, then the content id, or the webhook-id when the stream
        # cannot deduplicate it); the first one found already taken decides: conflict, stored duplicate,
        # or a pending one to publish again under the message id it was first published with.
        to_mark: list[Claim] = []
        deadline = asyncio.get_running_loop().time() + self.settings.publish_timeout_s
        try:
            # Without claims the publish bounds itself (same timeout): no second timer on the common path.
            async with asyncio.timeout_at(deadline) if claims else _UNBOUNDED:
                sid, mid = signal_id, msg_id
                for claim in claims:
                    existing = await replay.claim(claim.kv, claim.key, replay.Record(body_hash, sid, msg_id=mid))
                    if existing is None:
                        if claim.remember_stored:
                            to_mark.append(claim)
                        continue
                    if existing.body_hash != body_hash:
                        raise Problem(claim.conflict_code, claim.conflict_detail)
                    if existing.stored:
                        return Accepted(signal_id=existing.signal_id, duplicate=True)
                    if claim.remember_stored:
                        to_mark.append(claim)
                    sid, mid = existing.signal_id, existing.message_id
                    break
                ack = await publish_bytes(
                    self.js,
                    Subject.SIGNALS_NORMALIZED,
                    build(sid).model_dump_json().encode(),
                    msg_id=mid,
                    correlation_id=cid,
                    headers={BODY_HASH_HEADER: body_hash},
                    timeout=self.settings.publish_timeout_s,
                )
                duplicate = ack.duplicate is True
                if duplicate:
                    async with asyncio.timeout_at(deadline):
                        original = await self._original(ack.seq)
                    if original is not None:
                        if original.body_hash is not None and original.body_hash != body_hash:
                            raise Problem(*reused_id)
                        sid = original.signal_id
        except (TimeoutError, nats.errors.Error, OSError):
            metrics.gateway_nats_errors_total.inc()
            raise unavailable(retry) from None
        for claim in to_mark:
            await self._mark_stored(claim, replay.Record(body_hash, sid, stored=True, msg_id=mid))
        return Accepted(signal_id=sid, duplicate=duplicate)

    async def _original(self, seq: int) -> Original | None:
        """The stored message a duplicate publish was dropped for (None if it is gone from the stream).

        Its Nats-Msg-Id equals ours, so it is the same webhook (or content, or Idempotency-Key claim):
        a different body hash means the id was reused for another signal."""
        try:
            msg = await self.js.get_msg(SIGNALS_STREAM, seq)
        except NotFoundError:
            return None
        try:
            signal_id = str(json.loads(msg.data or b"{}")["signal_id"])
        except (ValueError, KeyError, TypeError):
            return None
        return Original(signal_id, (msg.headers or {}).get(BODY_HASH_HEADER))

    async def _mark_stored(self, claim: Claim, record: replay.Record) -> None:
        # The signal is stored already; if this fails the record stays "pending" and a resend re-publishes
        # with the same Nats-Msg-Id, which JetStream drops within its duplicate window.
        try:
            async with asyncio.timeout(self.settings.publish_timeout_s):
                await claim.kv.put(claim.key, record.encode())
        except (TimeoutError, nats.errors.Error, OSError):
            metrics.gateway_nats_errors_total.inc()
