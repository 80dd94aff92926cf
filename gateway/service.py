"""Run the gateway under uvicorn."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.settings import GatewaySettings


def main(settings: GatewaySettings) -> None:
    # proxy_headers=False: the gateway reads X-Forwarded-For itself, and only from `trusted_proxies`;
    # uvicorn's own handling would rewrite the peer address before the allowlist sees it.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None, proxy_headers=False)
