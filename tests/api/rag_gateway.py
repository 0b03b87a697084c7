"""The in-process gateway of tests/api/conftest.py, with knowledge bases in an embedded Chroma
under a temporary directory and a `support-bot` virtual model over the `docs` knowledge base."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from server.app import create_app
from server.rag.retriever import Retriever
from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness, settings_for_fakes
from tests.fakes.worker import FakeWorker, HostRouter
from tests.serving import served

VIRTUAL = {"support-bot": {"model": "gpt-4o-mini", "knowledge_base": "docs", "top_k": 3}}


@asynccontextmanager
async def rag_gateway(
    data_dir: Path,
    token_decoder: TokenDecoder,
    *,
    retriever: Retriever | None = None,
    limits: dict[str, Any] | None = None,
    **rag: Any,
) -> AsyncIterator[Harness]:
    chat = FakeWorker(models=["tiny-chat"])
    embed = FakeWorker(models=["tiny-embed"], kind="embedding")
    transport = HostRouter()
    transport.add("chat.test", chat)
    transport.add("embed.test", embed)
    registry = CollectorRegistry()
    settings = settings_for_fakes(
        rag={"data_dir": str(data_dir), "virtual_models": VIRTUAL, **rag}, limits=limits or {}
    )
    app = create_app(
        settings,
        upstream_transport=transport,
        registry=registry,
        token_decoder=token_decoder,
        retriever=retriever,
    )
    async with served(app) as client:
        yield Harness(client, chat, embed, transport, registry)


async def add_docs(harness: Harness, kb: str, docs: dict[str, str], **create: Any) -> None:
    created = await harness.client.post("/v1/knowledge_bases", json={"name": kb, **create})
    assert created.status_code == 200, created.text
    for doc_id, text in docs.items():
        added = await harness.client.post(
            f"/v1/knowledge_bases/{kb}/documents", json={"id": doc_id, "text": text}
        )
        assert added.status_code == 200, added.text
