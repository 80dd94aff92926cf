"""gateway.coalesce: what is written in one event-loop step leaves in one write, and nothing is held longer."""

from __future__ import annotations

import asyncio

from gateway.coalesce import CoalescingTransport


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def _next_step() -> None:
    await asyncio.sleep(0)


async def test_a_head_and_a_body_written_in_one_step_leave_in_one_write_at_the_end_of_the_step() -> None:
    fake = FakeTransport()
    transport = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 202 Accepted\r\n\r\n")
    transport.write(b"")
    transport.write(b'{"duplicate":false}')
    assert fake.writes == []
    await _next_step()
    assert fake.writes == [b'HTTP/1.1 202 Accepted\r\n\r\n{"duplicate":false}']
    transport.writelines([b"a", b"b"])
    await _next_step()
    assert fake.writes[1:] == [b"ab"]
    assert transport.get_extra_info("peername") == "info:peername"


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    fake = FakeTransport()
    transport = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"last words")
    transport.close()
    assert fake.writes == [b"last words"] and fake.closed
    await _next_step()
    assert fake.writes == [b"last words"]

    dropped = FakeTransport()
    transport = CoalescingTransport(dropped, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"never sent")
    transport.abort()
    await _next_step()
    assert dropped.writes == [] and dropped.aborted
