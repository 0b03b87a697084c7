"""An ASGI app run in-process for a test: its lifespan started, and an httpx client that calls
it without a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp


@asynccontextmanager
async def served(
    app: ASGIApp, base_url: str = "http://ragway", startup_timeout: float = 5
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        LifespanManager(app, startup_timeout=startup_timeout) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url=base_url) as c,
    ):
        yield c
