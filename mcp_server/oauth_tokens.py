"""Bearer JWT validation against an issuer's JWKS: signature, iss, aud, exp / nbf (with leeway, on an injected clock).

The JWKS is fetched over HTTP, kept for `jwks_ttl_seconds`, and fetched again when a token names an unknown
`kid` (at most every `jwks_min_refresh_seconds`, so random kids cannot make us hammer the issuer). Token text
never reaches a log or an error message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx2
import jwt
import structlog

from mcp_server.auth import OAuthSettings, Principal
from tools.clock import Clock

log = structlog.get_logger("mcp_server.oauth")

KEY_TYPES = {"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA", "PS384": "RSA", "PS512": "RSA"}
KEY_TYPES |= {"ES256": "EC", "ES384": "EC", "ES512": "EC"}
ALGORITHMS = frozenset(KEY_TYPES)


@dataclass(frozen=True)
class SigningKey:
    jwk: jwt.PyJWK
    alg: str | None
    """The `alg` the JWK declares, if any: then only that algorithm may use the key."""


class TokenRejected(Exception):
    """The token is not acceptable; `str()` says why, for the client (never the token itself)."""


class KeysUnavailable(Exception):
    """The issuer's JWKS could not be fetched and no cached key fits: the token could not be checked."""


class JwksCache:
    def __init__(
        self, url: str, clock: Clock, *, ttl_seconds: float, min_refresh_seconds: float, timeout: float = 5.0
    ) -> None:
        self.url = url
        self._clock = clock
        self._ttl = ttl_seconds
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout
        self._keys: dict[str | None, SigningKey] = {}
        self._fetched_at: datetime | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _age(self) -> float | None:
        return None if self._fetched_at is None else (self._clock.now() - self._fetched_at).total_seconds()

    async def key(self, kid: str | None) -> SigningKey:
        async with self._lock:
            age = self._age()
            stale = age is None or age > self._ttl
            unknown = self._find(kid) is None
            if stale or (unknown and (age is None or age >= self._min_refresh)):
                await self._refresh(keep_old=not stale)
        found = self._find(kid)
        if found is None:
            named = f"key id {str(kid)[:64]!r}" if kid is not None else "no key id (and the issuer has several keys)"
            raise TokenRejected(f"the token is signed with {named}, which is not among the issuer's keys")
        return found

    def _find(self, kid: str | None) -> SigningKey | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self, *, keep_old: bool) -> None:
        try:
            async with httpx2.AsyncClient(timeout=self._timeout) as http:
                response = await http.get(self.url, headers={"accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            log.warning("jwks fetch failed", url=self.url, error=type(exc).__name__)
            if self._keys and keep_old:
                return
            raise KeysUnavailable(f"the issuer's signing keys ({self.url}) could not be fetched") from exc
        self._keys = _parse_jwks(document)
        self._fetched_at = self._clock.now()
        self.fetches += 1
        log.info("jwks fetched", url=self.url, keys=len(self._keys))


def _parse_jwks(document: Any) -> dict[str | None, SigningKey]:
    keys: dict[str | None, SigningKey] = {}
    entries = document.get("keys") if isinstance(document, Mapping) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping) or entry.get("use", "sig") != "sig":
            continue
        try:
            alg = entry.get("alg")
            keys[entry.get("kid")] = SigningKey(jwt.PyJWK(dict(entry)), alg if isinstance(alg, str) else None)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            log.warning("jwks entry skipped", kid=entry.get("kid"), kty=entry.get("kty"))
    return keys


class TokenValidator:
    """Turns a bearer JWT into a `Principal`, or raises TokenRejected / KeysUnavailable."""

    def __init__(self, settings: OAuthSettings, clock: Clock) -> None:
        assert settings.issuer and settings.jwks_url, "OAuthSettings.check() first"
        self.issuer = settings.issuer
        self.audience = settings.expected_audience
        self.leeway = settings.leeway_seconds
        self._clock = clock
        self.jwks = JwksCache(
            settings.jwks_url,
            clock,
            ttl_seconds=settings.jwks_ttl_seconds,
            min_refresh_seconds=settings.jwks_min_refresh_seconds,
        )

    async def validate(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected("the bearer token is not a JWT") from exc
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenRejected(
                f"tokens signed with {alg!r} are not accepted (use one of {', '.join(sorted(ALGORITHMS))})"
            )
        key = await self.jwks.key(header.get("kid"))
        if key.jwk.key_type != KEY_TYPES[alg] or key.alg not in (alg, None):
            raise TokenRejected(f"the key the token names does not sign with {alg}")
        try:
            claims = jwt.decode(
                token,
                key=key.jwk.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["exp", "iss", "aud", "sub"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected("the token's signature does not verify against the issuer's key") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected(f"the token is not for this server (its aud must include {self.audience})") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRejected(f"the token was not issued by {self.issuer}") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"the token has no {exc.claim!r} claim") from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"the token is malformed ({type(exc).__name__})") from exc
        self._check_times(claims)
        return Principal(subject=str(claims["sub"]), scopes=_scopes(claims))

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock.now().timestamp()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise TokenRejected("the token's exp claim is not a number")
        if now > exp + self.leeway:
            raise TokenRejected("the token has expired: get a new one from the authorization server")
        if nbf is not None:
            if not isinstance(nbf, int | float) or isinstance(nbf, bool):
                raise TokenRejected("the token's nbf claim is not a number")
            if now + self.leeway < nbf:
                raise TokenRejected("the token is not valid yet (nbf is in the future): check the clocks")


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """RFC 9068 `scope` (space-separated), or `scp` (a list or a string, as some issuers send)."""
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list):
        return frozenset(str(s) for s in raw)
    return frozenset()
