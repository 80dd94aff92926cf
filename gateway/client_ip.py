"""The sender's address: the TCP peer, or X-Forwarded-For when (and only when) the peer is a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from gateway.sources import IpNetwork

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(value: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _within(ip: IpAddress, networks: Iterable[IpNetwork]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


def client_ip(peer: str | None, forwarded_for: list[str], proxies: tuple[IpNetwork, ...]) -> IpAddress | None:
    """Walk X-Forwarded-For from the right, skipping trusted proxies; the first other hop is the client.

    An unparseable hop ends the walk with None (not allowed anywhere an allowlist applies).
    """
    ip = _parse(peer) if peer else None
    if ip is None or not _within(ip, proxies):
        return ip
    hops = [h for header in forwarded_for for h in header.split(",") if h.strip()]
    for hop in reversed(hops):
        parsed = _parse(hop)
        if parsed is None:
            return None
        if not _within(parsed, proxies):
            return parsed
        ip = parsed
    return ip


def allowed(ip: IpAddress | None, networks: tuple[IpNetwork, ...]) -> bool:
    return not networks or (ip is not None and _within(ip, networks))
