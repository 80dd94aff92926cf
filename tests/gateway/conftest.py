"""Gateway fixtures (helpers live in kit.py, so that tests and fixtures share one module instance)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bus.embedded import EmbeddedNats
from tests.gateway.kit import Gateway, running_gateway, settings_for


@pytest.fixture
async def gw(nats_server: EmbeddedNats) -> AsyncIterator[Gateway]:
    async with running_gateway(settings_for(nats_server.url)) as gateway:
        yield gateway


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client
