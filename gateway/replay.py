"""The seen-id store: JetStream KV buckets shared by every gateway replica, kept across restarts.

A claim is a create-if-absent of `{body hash, signal id, message id, stored}` under a key derived from
the Idempotency-Key or the TradingView content id (and, only when the SIGNALS stream cannot deduplicate
for long enough, the webhook-id). The first request to claim a key publishes; later ones compare body
hashes (same: duplicate, different: conflict).

Standard Webhooks ids need no claim: a signed timestamp older than the tolerance is refused, so a
webhook-id can come back for at most 2 x tolerance, within the SIGNALS duplicate window. Such a signal
is published with `Nats-Msg-Id` = its webhook signal id (even when an Idempotency-Key names the signal
differently), so JetStream itself drops a resend, however its headers were changed, and stores it if
the original attempt failed; the gateway reads the stored original to tell a duplicate from a conflict
(gateway.ingest). If the stream's window is shorter than 2 x tolerance, the webhook-id is claimed in
`webhook_ids` (TTL 2 x tolerance) instead.

Records in `idempotency_keys` (Idempotency-Keys, and TradingView content ids, which carry no timestamp
that would bound a resend) live 24 h, longer than that window, so they are marked `stored` after the
ack and a duplicate of a stored one publishes nothing. A pending one (the first attempt died between
claim and ack) is published again under the message id the record names, which JetStream drops if the
first attempt was stored after all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from bus.cluster import create_key_value

SEEN_BUCKET = "webhook_ids"
IDEMPOTENCY_BUCKET = "idempotency_keys"
TRADINGVIEW_BUCKET = IDEMPOTENCY_BUCKET  # content ids of TradingView alerts


@dataclass(frozen=True)
class Record:
    body_hash: str
    signal_id: str
    stored: bool = False
    msg_id: str = ""  # the Nats-Msg-Id it was published under; "" means the signal id

    @property
    def message_id(self) -> str:
        return self.msg_id or self.signal_id

    def encode(self) -> bytes:
        data: dict[str, object] = {"h": self.body_hash, "sid": self.signal_id, "stored": self.stored}
        if self.msg_id and self.msg_id != self.signal_id:
            data["mid"] = self.msg_id
        return json.dumps(data).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Record:
        data = json.loads(raw)  # records written before "mid" existed were published under their signal id
        return cls(data["h"], data["sid"], bool(data.get("stored")), str(data.get("mid") or ""))


async def open_bucket(js: JetStreamContext, bucket: str, ttl_s: float) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        # replicas and placement: bus.cluster.cluster_settings (TRADING_MCP_NATS_REPLICAS, ...)
        return await create_key_value(
            js, api.KeyValueConfig(bucket=bucket, ttl=ttl_s, storage=api.StorageType.FILE, history=1)
        )


async def claim(kv: KeyValue, key: str, record: Record) -> Record | None:
    """None when this call created the key (the caller owns it), else the record already there."""
    for _ in range(3):
        try:
            await kv.create(key, record.encode())
            return None
        except KeyWrongLastSequenceError:
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                continue  # expired or deleted in between: try to create again
            if entry.value:
                return Record.decode(entry.value)
    raise KeyWrongLastSequenceError(description=f"could not claim {key}")
