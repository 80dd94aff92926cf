"""The seen-id store: JetStream KV buckets shared by every gateway replica, kept across restarts.

A claim is a create-if-absent of `{body hash, signal id, stored}` under a key derived from the
webhook-id (or the TradingView content id, or the Idempotency-Key). The first request to claim a key
publishes; later ones compare body hashes (same: duplicate, different: conflict).

Records in `webhook_ids` (Standard Webhooks ids) live 2 x tolerance (<= the SIGNALS duplicate window):
a signed timestamp older than the tolerance is refused anyway, and a duplicate simply re-publishes with
the same Nats-Msg-Id: JetStream drops it if the original was stored, and stores it if the original
attempt failed after its claim. Records in `idempotency_keys` (Idempotency-Keys, and TradingView content
ids, which carry no timestamp that would bound a resend) live 24 h, longer than that window, so they are
marked `stored` after the ack and a duplicate of a stored one publishes nothing.
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

    def encode(self) -> bytes:
        return json.dumps({"h": self.body_hash, "sid": self.signal_id, "stored": self.stored}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Record:
        data = json.loads(raw)
        return cls(data["h"], data["sid"], bool(data.get("stored")))


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
