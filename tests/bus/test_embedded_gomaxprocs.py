"""The embedded nats-server runs on one Go scheduler thread unless GOMAXPROCS says otherwise (bus.embedded)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from bus.embedded import free_port, start_nats_server


def _varz(monitor_port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/varz", timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


@pytest.mark.parametrize(("environ", "expected"), [(None, 1), ("2", 2)])
def test_the_embedded_server_takes_one_scheduler_thread_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: str | None, expected: int
) -> None:
    if environ is None:
        monkeypatch.delenv("GOMAXPROCS", raising=False)
    else:
        monkeypatch.setenv("GOMAXPROCS", environ)
    monitor = free_port()
    server = start_nats_server(tmp_path / "nats", monitor_port=monitor)
    try:
        varz = _varz(monitor)
        assert varz["gomaxprocs"] == expected
        assert varz["jetstream"]  # the same server otherwise: JetStream on
    finally:
        server.stop()
