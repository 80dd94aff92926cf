"""One send per response: uvicorn writes a response's head and its body to the socket separately.

A webhook answer is a few hundred bytes, yet it cost two `send` system calls, which on loopback also do the
receiver's work; they were a fifth of the gateway's CPU under load. This transport collects what is written
during one event-loop step and sends it at the end of that step (`loop.call_soon`), so the head and the body
that Starlette sends back to back leave together. Nothing waits longer than the current step; `close`
sends what is held first, `abort` drops it (as the socket's own buffer is dropped).
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescingTransport:
    """Wraps an asyncio transport; every attribute but write / writelines / close / abort is the wrapped one's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
