"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.

Secrets look like `whsec_<base64 key>`; a secret without the prefix is used as raw UTF-8 bytes.
"""

from __future__ import annotations

import base64
import functools
import hmac
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


@functools.lru_cache(maxsize=256)  # a source's few active secrets, decoded once instead of per webhook
def secret_key(secret: str) -> bytes:
    if secret.startswith(PREFIX):
        return base64.b64decode(secret[len(PREFIX) :])
    return secret.encode()


def _signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> bytes:
    """The base64 HMAC-SHA256 (without `v1,`)."""
    return base64.b64encode(hmac.digest(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, "sha256"))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    return "v1," + _signature(secret, msg_id, timestamp, body).decode()


def verify(secrets_: list[str], msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """True when any `v1,` signature in the space-separated header matches any active secret."""
    offered = [part[3:].encode() for part in header.split() if part.startswith("v1,")]
    if not offered:
        return False
    ok = False
    for secret in secrets_:
        expected = _signature(secret, msg_id, timestamp, body)
        for candidate in offered:
            # compare_digest on every pair: no early exit that would leak which one matched
            ok |= hmac.compare_digest(expected, candidate)
    return ok
