"""The RAG benchmark's ingest runs.

- Throughput: documents through the gateway's `POST /v1/knowledge_bases/{kb}/documents`, a few
  in flight, against (a) the same chunks posted straight to the embedding worker and (b) the
  same chunks encoded in this process by `SentenceTransformer.encode` with torch, pinned to the
  worker's core(s) with the worker's thread count: the model's own speed, with nothing of
  ragway's around it.
- Queries under ingest: a RAG chat's query embedding, exactly as the gateway sends it (one
  input, `x-ragway-priority: interactive`, to the worker), one at a time; first with nothing
  else running, then while a larger ingest runs. Streaming chats through the gateway with and
  without RAG are timed in the same rounds, for the TTFT they add.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from benchmarks.common import percentile

EMBEDDING_MODEL = "all-minilm-l6-v2"
# What the gateway's retriever sends with a query (server/rag/embedder.py).
INTERACTIVE = {"x-ragway-priority": "interactive"}
WORDS = ("router", "kettle", "warranty", "shipping", "invoice", "battery", "cable", "firmware")


def documents_for(count: int, first: int = 0) -> list[str]:
    paragraph = " ".join(WORDS * 12)
    return [f"Document {i}.\n\n" + "\n\n".join([paragraph] * 5) for i in range(first, count)]


def ms(values: list[float], q: float) -> float:
    return round(percentile(values, q) * 1000, 2)


async def worker_alone(embedding: str, texts: list[str]) -> float:
    """Seconds the embedding worker takes for `texts`, batched and in flight like ingestion."""
    gate = asyncio.Semaphore(4)
    async with httpx.AsyncClient(base_url=embedding, timeout=600) as client:

        async def one(batch: list[str]) -> None:
            async with gate:
                body = {"model": EMBEDDING_MODEL, "input": batch}
                (await client.post("/v1/embeddings", json=body)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one(texts[at : at + 64]) for at in range(0, len(texts), 64)))
        return time.perf_counter() - started


def in_process(texts: list[str], cpus: set[int], threads: int) -> float:
    """Seconds `SentenceTransformer.encode(texts, batch_size=32)` takes with torch, on `cpus`."""
    import torch  # heavy: only for this measurement
    from sentence_transformers import SentenceTransformer

    from ragway.weights import embedding_model_dir

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(embedding_model_dir()), device="cpu")
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        model.encode(texts[:32], batch_size=32)
        started = time.perf_counter()
        model.encode(texts, batch_size=32)
        return time.perf_counter() - started
    finally:
        os.sched_setaffinity(0, mine)


async def post_documents(base: str, kb: str, texts: list[str], first: int = 0) -> int:
    """Ingest `texts` as documents d<first>.. into `kb`, four in flight; chunks written."""
    gate = asyncio.Semaphore(4)
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:

        async def one(i: int, text: str) -> int:
            async with gate:
                body = {"id": f"d{first + i}", "text": text}
                reply = await client.post(f"/knowledge_bases/{kb}/documents", json=body)
                reply.raise_for_status()
                return int(reply.json()["chunks"])

        return sum(await asyncio.gather(*(one(i, t) for i, t in enumerate(texts))))


async def fresh_kb(base: str, name: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await client.delete(f"/knowledge_bases/{name}")
        (await client.post("/knowledge_bases", json={"name": name})).raise_for_status()


async def ingest(
    base: str, embedding: str, documents: int, cpus: set[int], threads: int
) -> dict[str, Any]:
    await fresh_kb(base, "bench-ingest")
    started = time.perf_counter()
    chunks = await post_documents(base, "bench-ingest", documents_for(documents))
    took = time.perf_counter() - started
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        stored = await client.get("/knowledge_bases/bench-ingest/documents/d0")
    # The same chunks, straight to the worker and in process: what the model alone allows.
    pieces = [part["text"] for part in stored.json()["data"]] * documents
    alone = await worker_alone(embedding, pieces)
    local = await asyncio.to_thread(in_process, pieces, cpus, threads)
    row = {
        "documents": documents,
        "chunks": chunks,
        "seconds": round(took, 2),
        "chunks_per_s": round(chunks / took, 1),
        "worker_alone_chunks_per_s": round(len(pieces) / alone, 1),
        "in_process_chunks_per_s": round(len(pieces) / local, 1),
        "ratio_to_in_process": round(chunks / took / (len(pieces) / local), 3),
    }
    print(f"ingest {row}", file=sys.stderr)
    return row


async def timed(call: Awaitable[Any]) -> float:
    started = time.perf_counter()
    await call
    return time.perf_counter() - started


async def first_event(client: httpx.AsyncClient, model: str, question: str) -> None:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": question}],
    }
    async with client.stream("POST", "/chat/completions", json=body) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            if line.startswith("data: {"):
                return


async def sample(base: str, embedding: str, until: Callable[[int], bool]) -> dict[str, list[float]]:
    """Rounds of (query embedding, RAG chat TTFT, plain chat TTFT), one request at a time."""
    times: dict[str, list[float]] = {"embedding": [], "rag": [], "plain": []}
    async with (
        httpx.AsyncClient(base_url=base, timeout=60) as gateway,
        httpx.AsyncClient(base_url=embedding, timeout=60) as worker,
    ):
        i = 0
        while not until(i):
            question = f"How do I reset the {WORDS[i % len(WORDS)]} after firmware update {i}?"
            body = {"model": EMBEDDING_MODEL, "input": question}
            query = worker.post("/v1/embeddings", json=body, headers=INTERACTIVE)
            times["embedding"].append(await timed(query))
            times["rag"].append(await timed(first_event(gateway, "bench-rag", question)))
            times["plain"].append(await timed(first_event(gateway, "bench-chat", question)))
            i += 1
    return times


def figures(times: dict[str, list[float]]) -> dict[str, float]:
    return {
        "rounds": len(times["embedding"]),
        "embedding_p50_ms": ms(times["embedding"], 50),
        "embedding_p99_ms": ms(times["embedding"], 99),
        "rag_ttft_p50_ms": ms(times["rag"], 50),
        "added_ttft_p50_ms": round(
            (statistics.median(times["rag"]) - statistics.median(times["plain"])) * 1000, 2
        ),
    }


async def queries_under_ingest(
    base: str, embedding: str, documents: int, idle_rounds: int
) -> dict[str, Any]:
    await sample(base, embedding, lambda i: i >= 10)  # warm-up
    idle = figures(await sample(base, embedding, lambda i: i >= idle_rounds))
    await fresh_kb(base, "bench-load")
    load = asyncio.create_task(post_documents(base, "bench-load", documents_for(documents)))
    # Let the ingest fill the worker's queue before the first probe.
    await asyncio.sleep(1.0)
    busy = figures(await sample(base, embedding, lambda i: load.done()))
    chunks = await load
    row = {
        "documents": documents,
        "chunks": chunks,
        "idle": idle,
        "under_ingest": busy,
        "embedding_ratio": round(busy["embedding_p50_ms"] / idle["embedding_p50_ms"], 2),
    }
    print(f"under ingest {row}", file=sys.stderr)
    return row
