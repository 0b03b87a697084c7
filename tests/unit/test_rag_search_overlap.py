"""RagChat._search: with the knowledge base's record known, the query is embedded and searched
while the record is read again; a base deleted since is still a 404, and one recreated with
another embedding model is searched again with it."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

import pytest

from server.errors import KnowledgeBaseNotFound
from server.rag.records import KnowledgeBase, RetrievedChunk
from server.services.rag_chat import RagChat, RagPlan

KB = KnowledgeBase("docs", "", "model-a", "open", 200, 40, 0)
PLAN = RagPlan("chat", "docs", "{context}", 3, None, None, 1, 1000)


class Store:
    def __init__(self, known: KnowledgeBase | None, current: KnowledgeBase | None):
        self.known = known
        self.current = current
        self.searching = asyncio.Event()  # get() answers once a search has begun

    def last_known(self, name: str) -> KnowledgeBase | None:
        return self.known

    async def get(self, name: str) -> KnowledgeBase:
        if self.known is not None:
            await asyncio.wait_for(self.searching.wait(), 5)
        if self.current is None:
            raise KnowledgeBaseNotFound(name)
        return self.current


class Retriever:
    def __init__(self, store: Store):
        self.store = store
        self.models: list[str] = []

    async def retrieve(self, kb: KnowledgeBase, query: str, **_: Any) -> list[RetrievedChunk]:
        self.models.append(kb.embedding_model)
        self.store.searching.set()
        await asyncio.sleep(0.01)
        return [RetrievedChunk(f"{kb.embedding_model}-1", "text", {}, 0.9)]


def rag_chat(store: Store, retriever: Retriever) -> RagChat:
    none = cast(Any, None)
    return RagChat(none, none, cast(Any, store), retriever, none, none)


async def test_known_base_is_searched_while_its_record_is_read() -> None:
    store = Store(KB, KB)
    retriever = Retriever(store)
    found = await rag_chat(store, retriever)._search(PLAN, "q", "r1")
    assert [c.id for c in found] == ["model-a-1"]
    assert retriever.models == ["model-a"]  # once: get() waited for the search to begin


async def test_unknown_base_is_read_first() -> None:
    store = Store(None, KB)
    retriever = Retriever(store)
    assert [c.id for c in await rag_chat(store, retriever)._search(PLAN, "q", "r1")]
    assert retriever.models == ["model-a"]


async def test_a_base_deleted_since_is_not_found() -> None:
    store = Store(KB, None)
    with pytest.raises(KnowledgeBaseNotFound):
        await rag_chat(store, Retriever(store))._search(PLAN, "q", "r1")


async def test_a_base_recreated_with_another_model_is_searched_with_it() -> None:
    store = Store(KB, replace(KB, embedding_model="model-b"))
    retriever = Retriever(store)
    found = await rag_chat(store, retriever)._search(PLAN, "q", "r1")
    assert [c.id for c in found] == ["model-b-1"]
    assert retriever.models == ["model-a", "model-b"]
