"""Embeddings for knowledge bases come from ragway's embedding workers, through the same catalog
and upstream client that serve /v1/embeddings: one model, one path, for documents and queries
alike (never Chroma's built-in embedding function)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import orjson

from router.types import WorkerKind
from server.errors import UpstreamBadResponse
from server.services.catalog import Catalog
from server.services.dispatch import Dispatcher, embedding_reroute

Vector = list[float]


# The embedding worker's batcher lane: a query's embedding never waits behind ingest batches.
PRIORITY_HEADER = "x-ragway-priority"


class Embedder(Protocol):
    async def embed(
        self, model: str, texts: Sequence[str], request_id: str, *, interactive: bool = False
    ) -> list[Vector]:
        """One vector per text, in order; `interactive` for a query someone is waiting on."""
        ...


def _vector(embedding: Any) -> Vector:
    """One embedding as sent: base64 of little-endian float32 (what the gateway asks for), or a
    list of numbers (from a worker that ignores `encoding_format`)."""
    if isinstance(embedding, str):
        raw = base64.b64decode(embedding, validate=True)
        if len(raw) % 4:
            raise ValueError(f"a base64 embedding of {len(raw)} bytes is not float32")
        vector: Vector = np.frombuffer(raw, dtype="<f4").tolist()
        return vector
    return [float(x) for x in embedding]


def _vectors(content: bytes, expected: int) -> list[Vector]:
    try:
        data: Any = orjson.loads(content)["data"]
        ordered = sorted(data, key=lambda item: item["index"])
        vectors = [_vector(item["embedding"]) for item in ordered]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UpstreamBadResponse(f"the embedding worker sent a malformed answer: {exc}") from exc
    if len(vectors) != expected:
        raise UpstreamBadResponse(
            f"the embedding worker sent {len(vectors)} vectors for {expected} inputs"
        )
    return vectors


class WorkerEmbedder:
    """Batches inputs (a few batches in flight at once, so the worker's own dynamic batching has
    work queued) and sends each batch to a worker chosen by the catalog, with the same load
    tracking, failover and ejection as /v1/embeddings."""

    def __init__(
        self, catalog: Catalog, dispatch: Dispatcher, *, batch: int = 64, in_flight: int = 4
    ):
        self._catalog = catalog
        self._dispatch = dispatch
        self._batch = batch
        self._in_flight = in_flight

    async def embed(
        self, model: str, texts: Sequence[str], request_id: str, *, interactive: bool = False
    ) -> list[Vector]:
        if not texts:
            return []
        gate = asyncio.Semaphore(self._in_flight)
        priority = "interactive" if interactive else "bulk"

        async def one(batch: Sequence[str]) -> list[Vector]:
            async with gate:
                return await self._embed_batch(model, batch, request_id, priority)

        batches = [texts[at : at + self._batch] for at in range(0, len(texts), self._batch)]
        results = await asyncio.gather(*(one(b) for b in batches))
        return [vector for result in results for vector in result]

    async def _embed_batch(
        self, model: str, texts: Sequence[str], request_id: str, priority: str
    ) -> list[Vector]:
        route = self._catalog.route(WorkerKind.EMBEDDING, model, request_id)
        # base64 (float32 bytes), as the OpenAI SDK asks by default: the worker skips
        # formatting 384 floats per input as decimal text, and this side parsing them back.
        body = orjson.dumps(
            {"model": route.served_model, "input": list(texts), "encoding_format": "base64"}
        )
        reroute = embedding_reroute(self._catalog, model, request_id)
        priority_header = {PRIORITY_HEADER: priority}
        reply = await self._dispatch.post(route, reroute, "/v1/embeddings", body, priority_header)
        reply.raise_for_status()
        return _vectors(reply.content, len(texts))
