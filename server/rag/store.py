"""Knowledge bases on Chroma: one collection per knowledge base, its record in the collection's
metadata, one entry per chunk.

Chroma runs embedded (under `rag.data_dir`) unless `rag.chroma_url` names a Chroma server,
which is the Helm chart's path; server/rag/chroma_client.py reaches either through one async
surface. Every call, connecting included, is bounded by `rag.store_timeout`: a Chroma that
hangs costs a 503 `vector_store_unavailable` after that long, never a stuck request. The client
is made on first use and again after a failed connection, so a Chroma server that is down when
the gateway starts costs RAG requests, not the gateway, and calls succeed again as soon as it
answers, without a restart. The outcome of the last call is the store's health, which
`/readyz` reports. Chroma's exceptions become ragway errors here, at the boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from server.background import BackgroundTask
from server.errors import (
    KnowledgeBaseExists,
    KnowledgeBaseNotFound,
    RagwayError,
    VectorStoreUnavailable,
)
from server.rag.chroma_client import ChromaClient, connect, load_chromadb, translate
from server.rag.records import KnowledgeBase, Metadata, RetrievedChunk
from server.rag.versions import markers, newest_complete, visible, with_document_metadata
from server.settings import RagSettings

T = TypeVar("T")

# Collections ragway owns are named PREFIX + knowledge base name, so that a Chroma server shared
# with other applications (langchain-chroma, say) never mixes their collections with ours.
PREFIX = "ragway-"
_RECORD = "ragway:"
_THREADS = 8  # embedded mode only
_REMEMBER_RETRY_S = 5.0


def _record_metadata(kb: KnowledgeBase) -> dict[str, Any]:
    return {
        f"{_RECORD}kind": "knowledge_base",
        f"{_RECORD}description": kb.description,
        f"{_RECORD}embedding_model": kb.embedding_model,
        f"{_RECORD}fail_mode": kb.fail_mode,
        f"{_RECORD}chunk_tokens": kb.chunk_tokens,
        f"{_RECORD}chunk_overlap": kb.chunk_overlap,
        f"{_RECORD}created_at": kb.created_at,
    }


def _record(name: str, metadata: dict[str, Any] | None) -> KnowledgeBase | None:
    meta = metadata or {}
    if meta.get(f"{_RECORD}kind") != "knowledge_base":
        return None
    return KnowledgeBase(
        name=name,
        description=str(meta.get(f"{_RECORD}description", "")),
        embedding_model=str(meta[f"{_RECORD}embedding_model"]),
        fail_mode="closed" if meta.get(f"{_RECORD}fail_mode") == "closed" else "open",
        chunk_tokens=int(meta[f"{_RECORD}chunk_tokens"]),
        chunk_overlap=int(meta[f"{_RECORD}chunk_overlap"]),
        created_at=int(meta.get(f"{_RECORD}created_at", 0)),
    )


class ChromaStore:
    def __init__(self, settings: RagSettings):
        self._settings = settings
        self._client: ChromaClient | None = None
        self._connecting = asyncio.Lock()
        self._pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="ragway-chroma")
        # The last record seen of each knowledge base: chat needs a knowledge base's fail mode
        # exactly when Chroma cannot be asked.
        self._known: dict[str, KnowledgeBase] = {}
        self._health: dict[str, Any] = {"state": "unknown", "reason": "not used yet"}
        self._background = BackgroundTask("ragway-chroma-records")

    async def prepare(self) -> None:
        """With a Chroma server configured, import chromadb before serving: the first
        knowledge-base call then costs no import, whose seconds hold the GIL and would slow
        every other request, liveness included. Then learn every knowledge base's record in
        the background, so that a restarted gateway knows each one's fail mode even if Chroma
        goes away before anyone asks."""
        if self._settings.chroma_url is not None:
            await load_chromadb(self._pool)
            self._background.start(self._remember)

    async def _remember(self) -> None:
        while True:
            try:
                await self.all()
            except RagwayError:
                await asyncio.sleep(_REMEMBER_RETRY_S)
            else:
                return

    @property
    def mode(self) -> str:
        return "embedded" if self._settings.chroma_url is None else "server"

    def health(self) -> dict[str, Any]:
        """The vector store's state as of its last call: `ok`, `degraded` (with the reason
        and since when) or `unknown` (not used yet)."""
        where = self._settings.chroma_url or self._settings.chroma_path
        return {"mode": self.mode, "url": str(where), **self._health}

    def _outcome(self, failure: str | None) -> None:
        state = "ok" if failure is None else "degraded"
        if self._health["state"] != state or failure is not None:
            since = self._health.get("since") if self._health["state"] == state else time.time()
            self._health = {"state": state, "reason": failure or "ok", "since": since}

    async def _connected(self) -> ChromaClient:
        async with self._connecting:
            if self._client is None:
                try:
                    self._client = await connect(self._settings, self._pool)
                except Exception as exc:  # chromadb raises ValueError for "cannot connect"
                    raise VectorStoreUnavailable(
                        f"Chroma ({self.mode}) is not available: {type(exc).__name__}: {exc}"
                    ) from exc
            return self._client

    async def _run(
        self, call: Callable[[ChromaClient], Awaitable[T]], name: str | None = None
    ) -> T:
        limit = self._settings.store_timeout
        try:
            async with asyncio.timeout(limit):
                result = await call(await self._connected())
        except TimeoutError as exc:
            self._outcome(f"timed out after {limit:g} s")
            raise VectorStoreUnavailable(
                f"The vector store did not answer within {limit:g} s.", code="vector_store_timeout"
            ) from exc
        except RagwayError as exc:
            if isinstance(exc, VectorStoreUnavailable):
                self._outcome(exc.message)
            raise
        except Exception as exc:
            mapped = translate(exc, name)
            if mapped is None:
                raise
            if isinstance(mapped, VectorStoreUnavailable):
                self._outcome(mapped.message)
            raise mapped from exc
        self._outcome(None)
        return result

    @staticmethod
    async def _collection(client: ChromaClient, name: str) -> Any:
        return await client.get_collection(PREFIX + name, embedding_function=None)

    async def aclose(self) -> None:
        await self._background.aclose()
        client, self._client = self._client, None
        if client is not None:
            close = getattr(client, "close", None)
            # AsyncHttpClient keeps its httpx clients in a class-level dict keyed by event loop
            # (chromadb/api/async_fastapi.py); closing them here keeps a later loop from
            # finding one bound to this loop.
            server = getattr(client, "_server", None)
            cleanup = getattr(server, "_cleanup", None)
            with contextlib.suppress(Exception):  # closing is best effort
                async with asyncio.timeout(self._settings.store_timeout):
                    if close is not None and server is None:
                        await close()
                    elif cleanup is not None:
                        await cleanup()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def last_known(self, name: str) -> KnowledgeBase | None:
        return self._known.get(name)

    async def create(self, kb: KnowledgeBase) -> None:
        async def create(client: ChromaClient) -> None:
            try:
                await client.create_collection(
                    PREFIX + kb.name,
                    metadata=_record_metadata(kb),
                    configuration={"hnsw": {"space": "cosine"}},
                    embedding_function=None,
                )
            except Exception as exc:
                if "already exists" in str(exc):
                    raise KnowledgeBaseExists(kb.name) from exc
                raise

        await self._run(create)
        self._known[kb.name] = kb

    async def get(self, name: str) -> KnowledgeBase:
        collection = await self._run(lambda c: self._collection(c, name), name)
        kb = _record(name, collection.metadata)
        if kb is None:
            raise KnowledgeBaseNotFound(name)
        self._known[name] = kb
        return kb

    async def all(self) -> list[KnowledgeBase]:
        collections = await self._run(lambda c: c.list_collections())
        found = []
        for collection in collections:
            if collection.name.startswith(PREFIX):
                kb = _record(collection.name.removeprefix(PREFIX), collection.metadata)
                if kb is not None:
                    found.append(kb)
                    self._known[kb.name] = kb
        return sorted(found, key=lambda kb: kb.name)

    async def delete(self, name: str) -> None:
        await self.get(name)  # 404 for a collection that is not a knowledge base
        await self._run(lambda c: c.delete_collection(PREFIX + name), name)
        self._known.pop(name, None)

    async def count(self, name: str) -> int:
        async def count(client: ChromaClient) -> int:
            return int(await (await self._collection(client, name)).count())

        return await self._run(count, name)

    async def ids(self, name: str, where: dict[str, Any]) -> list[str]:
        async def ids(client: ChromaClient) -> list[str]:
            collection = await self._collection(client, name)
            return list((await collection.get(where=where, include=[]))["ids"])

        return await self._run(ids, name)

    async def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        texts: Sequence[str],
        metadatas: Sequence[Metadata],
    ) -> None:
        """Writes in batches of at most 1,000, each its own bounded call; not atomic across
        batches (server/rag/ingest.py makes a document's replacement atomic for readers)."""

        async def batch_size(client: ChromaClient) -> int:
            return min(int(await client.get_max_batch_size()), 1000)

        step = await self._run(batch_size, name)
        for at in range(0, len(ids), step):

            async def upsert(client: ChromaClient, at: int = at) -> None:
                collection = await self._collection(client, name)
                await collection.upsert(
                    ids=list(ids[at : at + step]),
                    embeddings=cast(Any, [list(v) for v in vectors[at : at + step]]),
                    documents=list(texts[at : at + step]),
                    metadatas=cast(Any, list(metadatas[at : at + step])),
                )

            await self._run(upsert, name)

    async def delete_ids(self, name: str, ids: Sequence[str]) -> None:
        async def delete(client: ChromaClient) -> None:
            await (await self._collection(client, name)).delete(ids=list(ids))

        if ids:
            await self._run(delete, name)

    async def read(
        self,
        name: str,
        where: dict[str, Any] | None,
        *,
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = True,
    ) -> list[RetrievedChunk]:
        """Chunks as stored, every version (see current_versions for what readers see)."""

        async def read(client: ChromaClient) -> list[RetrievedChunk]:
            got = await (await self._collection(client, name)).get(
                where=where,
                limit=limit,
                offset=offset or None,
                include=["documents", "metadatas"] if with_text else ["metadatas"],
            )
            return _chunks(got)

        return await self._run(read, name)

    async def query(
        self, name: str, vector: Sequence[float], top_k: int, where: dict[str, Any] | None
    ) -> list[RetrievedChunk]:
        """The `top_k` nearest chunks of complete, unmixed document versions (versions.py),
        with the document-level metadata of their version joined back in. Twice as many are
        asked for, so that a document caught mid-write (two versions) still leaves `top_k`."""

        async def query(client: ChromaClient) -> list[RetrievedChunk]:
            collection = await self._collection(client, name)
            found = await _nearest(collection, vector, 2 * top_k, where)
            wanted = markers(name, found)
            stored = (
                await collection.get(ids=list(wanted), include=["metadatas"]) if wanted else None
            )
            firsts = _chunks(stored) if stored else []
            current = newest_complete(wanted, (c.id for c in firsts))
            return with_document_metadata(visible(found, current)[:top_k], firsts)

        return await self._run(query, name)


def _chunks(got: Any) -> list[RetrievedChunk]:
    """Chroma's `get` answer as chunks (the text empty where it was not asked for)."""
    ids = got["ids"]
    texts = got.get("documents") or [None] * len(ids)
    metas = got.get("metadatas") or [None] * len(ids)
    return [
        RetrievedChunk(id_, texts[i] or "", cast(Metadata, metas[i] or {}))
        for i, id_ in enumerate(ids)
    ]


async def _nearest(
    collection: Any, vector: Sequence[float], top_k: int, where: dict[str, Any] | None
) -> list[RetrievedChunk]:
    found = await collection.query(
        query_embeddings=[list(vector)],
        n_results=top_k,
        where=where,
        include=["documents", "metadatas", "distances"],
    )
    ids = found["ids"][0]
    texts = (found["documents"] or [[]])[0]
    metas = (found["metadatas"] or [[]])[0]
    distances = (found["distances"] or [[]])[0]
    # Cosine distance in [0, 2] back to cosine similarity in [-1, 1].
    return [
        RetrievedChunk(id_, texts[i] or "", cast(Metadata, metas[i] or {}), 1.0 - distances[i])
        for i, id_ in enumerate(ids)
    ]
