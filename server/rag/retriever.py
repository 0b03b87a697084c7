"""Retrieval: embed the query with the knowledge base's own embedding model, then search its
collection."""

from __future__ import annotations

from typing import Any, Protocol

from server.rag.embedder import Embedder
from server.rag.records import KnowledgeBase, RetrievedChunk
from server.rag.store import ChromaStore


class Retriever(Protocol):
    async def retrieve(
        self,
        kb: KnowledgeBase,
        query: str,
        *,
        top_k: int,
        where: dict[str, Any] | None,
        min_score: float | None,
        request_id: str,
    ) -> list[RetrievedChunk]:
        """The best `top_k` chunks for `query`, best first, none scoring below `min_score`."""
        ...


class ChromaRetriever:
    def __init__(self, store: ChromaStore, embedder: Embedder):
        self._store = store
        self._embedder = embedder

    async def retrieve(
        self,
        kb: KnowledgeBase,
        query: str,
        *,
        top_k: int,
        where: dict[str, Any] | None,
        min_score: float | None,
        request_id: str,
    ) -> list[RetrievedChunk]:
        (vector,) = await self._embedder.embed(
            kb.embedding_model, [query], request_id, interactive=True
        )
        found = await self._store.query(kb.name, vector, top_k, where)
        return [c for c in found if min_score is None or (c.score or 0.0) >= min_score]
