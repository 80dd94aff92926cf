"""A loopback stand-in for the Anthropic Messages API: scripted turns, any headers (the SDK's beta ones too).

Run the agent without an API account or network:

    python -m scripts.messages_stub --port 9000
    ANTHROPIC_BASE_URL=http://127.0.0.1:9000 ANTHROPIC_API_KEY=stub trading-mcp agent --dry-run

From the command line it answers every request with one decision (`--answer`, default a `hold`). The tests
script it turn by turn (`tool_use`, `answer`, `refuse`) and read what the agent sent (`requests`, `headers`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

Turn = Callable[[int, dict[str, Any]], tuple[int, dict[str, Any]]]


def tool_use(name: str, arguments: dict[str, Any], *, tokens: tuple[int, int] = (100, 20)) -> Turn:
    def turn(n: int, _: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        block = {"type": "tool_use", "id": f"toolu_{n}", "name": name, "input": arguments}
        return 200, _message(n, [block], "tool_use", tokens)

    return turn


def answer(text: str, *, tokens: tuple[int, int] = (100, 40)) -> Turn:
    def turn(n: int, _: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, _message(n, [{"type": "text", "text": text}], "end_turn", tokens)

    return turn


def refuse(status: int, message: str) -> Turn:
    def turn(n: int, _: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return status, {"type": "error", "error": {"type": "invalid_request_error", "message": message}}

    return turn


def _message(n: int, content: list[dict[str, Any]], stop: str, tokens: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "model": "stub-model",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
    }


@dataclass
class MessagesStub:
    """Plays `script` in order (the last turn repeats) and records every request it got."""

    script: list[Turn]
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def messages(request: Request) -> JSONResponse:
            body = json.loads(await request.body())
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            n = len(self.requests)
            status, payload = self.script[min(n, len(self.script)) - 1](n, body)
            return JSONResponse(payload, status_code=status)

        return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])

    def tool_results(self, request_index: int) -> list[str]:
        """The texts of the tool results sent back in one request (0-based)."""
        last = self.requests[request_index]["messages"][-1]
        out = []
        for block in last["content"]:
            if block.get("type") == "tool_result":
                content = block["content"]
                out.append(content if isinstance(content, str) else "".join(c.get("text", "") for c in content))
        return out


HOLD = json.dumps({"action": "hold", "confidence": 0.0, "rationale": "messages stub: it always holds"})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(prog="python -m scripts.messages_stub", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--answer", default=HOLD, help="the text of every answer (default: a hold decision)")
    args = p.parse_args(argv)
    print(f"messages stub on http://{args.host}:{args.port} (set ANTHROPIC_BASE_URL to it)", flush=True)
    uvicorn.run(MessagesStub([answer(args.answer)]).app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
