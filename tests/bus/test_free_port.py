"""`bus.embedded.free_port` never hands out a port twice in one process: a test cluster picks nine ports before it
binds any, and two equal picks (a node's client port and another's monitoring port) left a node dead at start."""

from __future__ import annotations

import socket

from bus.embedded import _ephemeral_floor, free_port


def test_ports_picked_before_any_is_bound_all_differ_and_are_free() -> None:
    ports = [free_port() for _ in range(300)]  # ~12k ports to pick from: 300 random picks collide ~97% of the time
    assert len(set(ports)) == len(ports)
    assert all(p < _ephemeral_floor() for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # still free: picking binds nothing
