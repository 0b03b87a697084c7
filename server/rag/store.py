"""Knowledge bases on Chroma: one collection per knowledge base, its record in the collection's
metadata, one entry per chunk.

Chroma runs embedded (`PersistentClient` under `rag.data_dir`) unless `rag.chroma_url` names a
Chroma server (`HttpClient`), which is the Helm chart's path. The chromadb client blocks, so
every call runs on this store's own small thread pool: a slow Chroma then cannot starve the
default executor the rest of the gateway uses. chromadb's HTTP client has no timeout
(`httpx.Client(timeout=None)` in chromadb/api/fastapi.py), so callers bound their waits with
asyncio timeouts. The client is made on first use, so a Chroma server that is down when the
gateway starts costs RAG requests, not the gateway, and a gateway that never uses a knowledge
base never imports chromadb (seconds). Chroma's exceptions become ragway errors here, at the
boundary.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar, cast

import httpx

from server.errors import (
    InvalidRequest,
    KnowledgeBaseExists,
    KnowledgeBaseNotFound,
    RagwayError,
    VectorStoreUnavailable,
)
from server.rag.records import KnowledgeBase, Metadata, RetrievedChunk
from server.settings import RagSettings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

T = TypeVar("T")

# Collections ragway owns are named PREFIX + knowledge base name, so that a Chroma server shared
# with other applications (langchain-chroma, say) never mixes their collections with ours.
PREFIX = "ragway-"
_RECORD = "ragway:"
_THREADS = 8


def make_client(settings: RagSettings) -> ClientAPI:
    # chromadb takes seconds to import: imported here, a gateway that never touches a knowledge
    # base starts without it.
    import chromadb
    from chromadb.config import Settings as ChromaClientSettings

    client_settings = ChromaClientSettings(anonymized_telemetry=False)
    url = settings.chroma_url
    if url is None:
        path = settings.chroma_path
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=client_settings)
    return chromadb.HttpClient(
        host=url.host or "localhost",
        port=url.port or (443 if url.scheme == "https" else 80),
        ssl=url.scheme == "https",
        settings=client_settings,
    )


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


def _translate(exc: Exception, name: str | None) -> RagwayError | None:
    """The ragway error for an exception from chromadb, or None for anything else (a bug)."""
    from chromadb.errors import ChromaError, InvalidArgumentError, NotFoundError

    if isinstance(exc, NotFoundError) and name is not None:
        return KnowledgeBaseNotFound(name)
    if isinstance(exc, InvalidArgumentError | ValueError):
        # Chroma's own validation (filters, metadata, a vector of the wrong dimension).
        return InvalidRequest(f"The vector store refused the request: {exc}")
    if isinstance(exc, ChromaError | httpx.HTTPError | OSError | RuntimeError):
        return VectorStoreUnavailable(f"The vector store failed: {type(exc).__name__}: {exc}")
    return None


class ChromaStore:
    def __init__(self, settings: RagSettings):
        self._settings = settings
        self._client: ClientAPI | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="ragway-chroma")
        # The last record seen of each knowledge base: chat needs a knowledge base's fail mode
        # exactly when Chroma cannot be asked.
        self._known: dict[str, KnowledgeBase] = {}

    @property
    def mode(self) -> str:
        return "embedded" if self._settings.chroma_url is None else "server"

    def _get_client(self) -> ClientAPI:
        with self._lock:
            if self._client is None:
                try:
                    self._client = make_client(self._settings)
                except Exception as exc:  # chromadb raises ValueError for "cannot connect"
                    where = self._settings.chroma_url or self._settings.chroma_path
                    raise VectorStoreUnavailable(
                        f"Chroma ({self.mode}, {where}) is not available: {exc}"
                    ) from exc
            return self._client

    async def _run(self, call: Callable[[], T], name: str | None = None) -> T:
        def guarded() -> T:
            try:
                return call()
            except RagwayError:
                raise
            except Exception as exc:
                mapped = _translate(exc, name)
                if mapped is None:
                    raise
                raise mapped from exc

        return await asyncio.get_running_loop().run_in_executor(self._pool, guarded)

    def _collection(self, name: str) -> Collection:
        return self._get_client().get_collection(PREFIX + name, embedding_function=None)

    async def aclose(self) -> None:
        def close() -> None:
            if self._client is not None:
                from chromadb.api.client import Client

                # ClientAPI does not declare close(); both of chromadb's clients are a Client.
                if isinstance(self._client, Client):
                    self._client.close()

        await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def last_known(self, name: str) -> KnowledgeBase | None:
        return self._known.get(name)

    async def create(self, kb: KnowledgeBase) -> None:
        def create() -> None:
            try:
                self._get_client().create_collection(
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
        collection = await self._run(lambda: self._collection(name), name)
        kb = _record(name, collection.metadata)
        if kb is None:
            raise KnowledgeBaseNotFound(name)
        self._known[name] = kb
        return kb

    async def all(self) -> list[KnowledgeBase]:
        collections = await self._run(lambda: self._get_client().list_collections())
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
        await self._run(lambda: self._get_client().delete_collection(PREFIX + name), name)
        self._known.pop(name, None)

    async def count(self, name: str) -> int:
        return await self._run(lambda: self._collection(name).count(), name)

    async def ids(self, name: str, where: dict[str, Any]) -> list[str]:
        def ids() -> list[str]:
            return list(self._collection(name).get(where=cast(Any, where), include=[])["ids"])

        return await self._run(ids, name)

    async def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        texts: Sequence[str],
        metadatas: Sequence[Metadata],
    ) -> None:
        def upsert() -> None:
            client = self._get_client()
            collection = self._collection(name)
            step = min(client.get_max_batch_size(), 1000)
            for at in range(0, len(ids), step):
                collection.upsert(
                    ids=list(ids[at : at + step]),
                    embeddings=cast(Any, vectors[at : at + step]),
                    documents=list(texts[at : at + step]),
                    metadatas=cast(Any, list(metadatas[at : at + step])),
                )

        await self._run(upsert, name)

    async def delete_ids(self, name: str, ids: Sequence[str]) -> None:
        await self._run(lambda: self._collection(name).delete(ids=list(ids)), name)

    async def read(
        self, name: str, where: dict[str, Any] | None, *, limit: int | None = None, offset: int = 0
    ) -> list[RetrievedChunk]:
        def read() -> list[RetrievedChunk]:
            got = self._collection(name).get(
                where=cast(Any, where),
                limit=limit,
                offset=offset or None,
                include=["documents", "metadatas"],
            )
            texts = got["documents"] or []
            metas = got["metadatas"] or []
            return [
                RetrievedChunk(id_, texts[i] or "", cast(Metadata, metas[i] or {}))
                for i, id_ in enumerate(got["ids"])
            ]

        return await self._run(read, name)

    async def query(
        self, name: str, vector: Sequence[float], top_k: int, where: dict[str, Any] | None
    ) -> list[RetrievedChunk]:
        def query() -> list[RetrievedChunk]:
            found = self._collection(name).query(
                query_embeddings=cast(Any, [vector]),
                n_results=top_k,
                where=cast(Any, where),
                include=["documents", "metadatas", "distances"],
            )
            ids = found["ids"][0]
            texts = (found["documents"] or [[]])[0]
            metas = (found["metadatas"] or [[]])[0]
            distances = (found["distances"] or [[]])[0]
            # Cosine distance in [0, 2] back to cosine similarity in [-1, 1].
            return [
                RetrievedChunk(
                    id_, texts[i] or "", cast(Metadata, metas[i] or {}), 1.0 - distances[i]
                )
                for i, id_ in enumerate(ids)
            ]

        return await self._run(query, name)
