"""The gateway in-process (lifespan included) in front of two fake workers."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from server.app import create_app
from server.lifespan import load_token_decoder
from server.services.embeddings import TokenDecoder
from server.settings import RagwaySettings
from tests.fakes.worker import FakeWorker, HostRouter
from tests.serving import served


@dataclass
class Harness:
    client: httpx.AsyncClient
    chat: FakeWorker
    embed: FakeWorker
    transport: HostRouter
    registry: CollectorRegistry

    def metric(self, name: str, labels: dict[str, str]) -> float | None:
        return self.registry.get_sample_value(name, labels)

    async def wait_for(self, condition: Callable[[dict[str, Any]], bool]) -> None:
        """Poll /readyz until `condition` holds for its JSON (the probe loop runs every 50 ms)."""
        for _ in range(100):
            if condition((await self.client.get("/readyz")).json()):
                return
            await asyncio.sleep(0.02)
        raise AssertionError("readiness never reached the expected state")


@pytest.fixture(scope="session")
def token_decoder() -> TokenDecoder:
    return load_token_decoder()


def _responses_file() -> str:
    return os.path.join(tempfile.gettempdir(), f"ragway-api-tests-{os.getpid()}.sqlite3")


def settings_for_fakes(**overrides: object) -> RagwaySettings:
    return RagwaySettings.model_validate(
        {
            "workers": [
                {"url": "http://chat.test", "kind": "chat", "name": "chat-0"},
                {"url": "http://embed.test", "kind": "embedding", "name": "embed-0"},
            ],
            "aliases": {"gpt-4o-mini": "tiny-chat", "text-embedding-3-small": "tiny-embed"},
            "stream": {"ping_interval": 0},
            "health": {"interval": 0.05, "timeout": 1.0},
            # Stored responses in a file of this test process, never in the user's data dir.
            "responses": {"sqlite_path": _responses_file()},
            **overrides,
        }
    )


@pytest.fixture
async def harness(token_decoder: TokenDecoder) -> AsyncIterator[Harness]:
    chat = FakeWorker(models=["tiny-chat"])
    embed = FakeWorker(models=["tiny-embed"], kind="embedding")
    transport = HostRouter()
    transport.add("chat.test", chat)
    transport.add("embed.test", embed)
    registry = CollectorRegistry()
    app = create_app(
        settings_for_fakes(),
        upstream_transport=transport,
        registry=registry,
        token_decoder=token_decoder,
    )
    async with served(app) as client:
        yield Harness(client, chat, embed, transport, registry)
