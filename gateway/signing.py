"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.

Secrets look like `whsec_<base64 key>`; a secret without the prefix is used as raw UTF-8 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    if secret.startswith(PREFIX):
        return base64.b64decode(secret[len(PREFIX) :])
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secrets_: list[str], msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """True when any `v1,` signature in the space-separated header matches any active secret."""
    offered = [part.split(",", 1)[1] for part in header.split() if part.startswith("v1,")]
    if not offered:
        return False
    ok = False
    for secret in secrets_:
        expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
        for candidate in offered:
            # compare_digest on every pair: no early exit that would leak which one matched
            ok |= hmac.compare_digest(expected.encode(), candidate.encode())
    return ok
