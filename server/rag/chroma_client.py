"""Reaching Chroma with bounded waits: one async surface over both of chromadb's modes.

Server mode (`rag.chroma_url`, the Helm path) uses chromadb's `AsyncHttpClient`: cancelling a
call (the store's timeout) cancels its httpx request and closes the connection, so a Chroma
that accepts connections and never answers holds no thread and no request for longer than the
timeout. chromadb's HTTP clients have no timeout of their own (`httpx.AsyncClient(timeout=None)`
in chromadb/api/async_fastapi.py), hence the store's.

Embedded mode (`PersistentClient` under `rag.data_dir`) has only a blocking client; `Threaded`
runs its calls on a small pool of the store's own, so a slow disk cannot starve the default
executor. A call that times out there keeps its thread until it returns; the pool's size bounds
how many can.

chromadb takes seconds to import: it is imported here, on first use, so a gateway that never
touches a knowledge base starts without it.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx

from server.errors import InvalidRequest, KnowledgeBaseNotFound, RagwayError, VectorStoreUnavailable
from server.settings import RagSettings

# Both modes are used through the same duck-typed surface (chromadb's AsyncClientAPI and
# AsyncCollection, or `Threaded` over their blocking twins), so the store types them as Any.
ChromaClient = Any


async def load_chromadb(pool: ThreadPoolExecutor) -> None:
    """Import chromadb off the event loop (it takes seconds)."""
    await asyncio.get_running_loop().run_in_executor(pool, importlib.import_module, "chromadb")


async def connect(settings: RagSettings, pool: ThreadPoolExecutor) -> ChromaClient:
    loop = asyncio.get_running_loop()
    await load_chromadb(pool)
    import chromadb
    from chromadb.config import Settings as ChromaClientSettings

    client_settings = ChromaClientSettings(anonymized_telemetry=False)
    url = settings.chroma_url
    if url is None:
        path = settings.chroma_path

        def persistent() -> Any:
            path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(path), settings=client_settings)

        return Threaded(await loop.run_in_executor(pool, persistent), pool)
    token = settings.chroma_token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else None
    return await chromadb.AsyncHttpClient(
        host=url.host or "localhost",
        port=url.port or (443 if url.scheme == "https" else 80),
        ssl=url.scheme == "https",
        headers=headers,
        settings=client_settings,
    )


class Threaded:
    """A blocking chromadb client or collection, with every method awaitable (run on `pool`);
    collections it returns are wrapped the same way. Plain attributes pass through."""

    def __init__(self, target: Any, pool: ThreadPoolExecutor):
        self._target = target
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value
        return partial(self._call, value)

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._pool, partial(method, *args, **kwargs))
        if type(result).__name__ == "Collection":
            return Threaded(result, self._pool)
        if isinstance(result, list) and result and type(result[0]).__name__ == "Collection":
            return [Threaded(c, self._pool) for c in result]
        return result

    async def close(self) -> None:
        from chromadb.api.client import Client

        # ClientAPI does not declare close(); both of chromadb's blocking clients are a Client.
        if isinstance(self._target, Client):
            await asyncio.get_running_loop().run_in_executor(self._pool, self._target.close)


def translate(exc: Exception, name: str | None) -> RagwayError | None:
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
