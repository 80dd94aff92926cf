"""scripts/messages_stub.py as the README uses it: `python -m scripts.messages_stub --port P` answers the
Anthropic SDK (beta endpoint and headers included) with a hold decision, so the agent runs offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from anthropic import AsyncAnthropic

from bus.embedded import free_port
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]


async def test_the_messages_stub_runs_from_the_command_line_and_answers_the_sdks_beta_requests() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.messages_stub", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        async def listening() -> bool:
            assert proc.poll() is None, "the stub exited"
            try:
                async with httpx.AsyncClient() as http:
                    await http.get(f"http://127.0.0.1:{port}/")
                return True
            except httpx.TransportError:
                return False

        await wait_for(listening, 20, "the stub to listen")
        async with AsyncAnthropic(api_key="stub", base_url=f"http://127.0.0.1:{port}", max_retries=0) as client:
            reply = await client.beta.messages.create(
                model="any-model",
                max_tokens=100,
                messages=[{"role": "user", "content": "AAPL buy 5?"}],
                betas=["token-efficient-tools-2025-02-19"],
            )
    finally:
        proc.terminate()
        proc.wait(15)
    decision = json.loads(reply.content[0].text)  # type: ignore[union-attr]
    assert decision["action"] == "hold" and reply.stop_reason == "end_turn"
