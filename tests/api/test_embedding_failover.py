"""Embeddings go through the chat path's machinery (server/services/dispatch.py): a dead
embedding worker is ejected on its first failure and the request fails over, for
/v1/embeddings and for RAG's embedding calls (ingest batches and queries) alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from server.app import create_app
from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness, settings_for_fakes
from tests.fakes.worker import FakeWorker, HostRouter
from tests.serving import served


@pytest.fixture
async def two_embedders(tmp_path: Path, token_decoder: TokenDecoder) -> AsyncIterator[Harness]:
    chat = FakeWorker(models=["tiny-chat"])
    a = FakeWorker(models=["tiny-embed"], kind="embedding")
    b = FakeWorker(models=["tiny-embed"], kind="embedding")
    transport = HostRouter()
    transport.add("chat.test", chat)
    transport.add("a.test", a)
    transport.add("b.test", b)
    settings = settings_for_fakes(
        workers=[
            {"url": "http://chat.test", "kind": "chat", "name": "chat-0"},
            {"url": "http://a.test", "kind": "embedding", "name": "a"},
            {"url": "http://b.test", "kind": "embedding", "name": "b"},
        ],
        routing={"embedding_policy": "round_robin"},
        retries={"max_attempts": 3, "backoff": 0},
        health={"interval": 60, "timeout": 1.0, "eject_base": 30},
        rag={"data_dir": str(tmp_path)},
    )
    registry = CollectorRegistry()
    app = create_app(
        settings, upstream_transport=transport, registry=registry, token_decoder=token_decoder
    )
    async with served(app) as client:
        yield Harness(client, chat, a, transport, registry)


def _ejected(ready: dict[str, object], worker: str) -> bool:
    workers = ready["workers"]
    assert isinstance(workers, list)
    return bool(next(w for w in workers if w["id"] == worker)["ejected"])


async def test_embeddings_fail_over_and_eject_the_dead_worker(two_embedders: Harness) -> None:
    h = two_embedders
    h.transport.failures["a.test"] = httpx.ConnectError("refused")
    for _ in range(6):
        response = await h.client.post(
            "/v1/embeddings", json={"model": "text-embedding-3-small", "input": ["x", "y"]}
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) == 2
    assert h.transport.generation_hosts.count("a.test") == 1  # then out of rotation
    assert h.metric("ragway_retries_total", {"error_type": "upstream_unavailable"}) == 1
    assert _ejected((await h.client.get("/readyz")).json(), "a")


async def test_rag_embedding_calls_fail_over_too(two_embedders: Harness) -> None:
    h = two_embedders
    h.transport.failures["a.test"] = httpx.ConnectError("refused")
    created = await h.client.post(
        "/v1/knowledge_bases", json={"name": "docs", "embedding_model": "tiny-embed"}
    )
    assert created.status_code == 200, created.text
    text = " ".join(f"Sentence {i} about routers and cables." for i in range(400))
    added = await h.client.post(
        "/v1/knowledge_bases/docs/documents", json={"id": "d", "text": text}
    )
    assert added.status_code == 200, added.text
    assert added.json()["chunks"] > 1
    for _ in range(3):
        found = await h.client.post("/v1/knowledge_bases/docs/query", json={"query": "routers"})
        assert found.status_code == 200, found.text
        assert found.json()["data"]
    assert h.transport.generation_hosts.count("a.test") == 1
    assert _ejected((await h.client.get("/readyz")).json(), "a")
