"""RAG: retrieval latency at 10k and 100k chunks, ingest throughput, and the TTFT RAG adds.

Method:
- Retrieval: a knowledge base in embedded Chroma holding N chunks whose vectors are precomputed
  random unit vectors (384 dims, MiniLM's size), searched with random unit vectors through
  `ChromaStore.query`, the gateway's own search path (its thread pool, cosine space), top_k 4.
  p50/p99 over the queries, after a warm-up. The stores are kept under --data-dir and reused.
- Ingest: documents through a gateway's `POST /v1/knowledge_bases/{kb}/documents` (parsing,
  token-aware chunking, embedding on the real MiniLM worker, Chroma upsert), a few in flight;
  chunks per second over the whole run.
- Added TTFT: streaming chats through the gateway, alternating a virtual model (RAG over the
  largest store) and its base model (no RAG), one at a time. The chat worker streams its first
  token at once (benchmarks/fake_chat.py), so the difference is ragway's work (query embedding
  on the real MiniLM worker, vector search, token counting through the worker's /tokenize, the
  rewrite), not the model's prefill of a longer prompt, which depends on the model and hardware.

    python -m benchmarks.rag_bench [--sizes 10000 100000] [--queries 500] [--chats 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import percentile
from benchmarks.procs import pin_self
from benchmarks.rag_ingest import WORDS, ingest, queries_under_ingest
from benchmarks.rag_report import markdown, write_section
from ragway.launch import ProcessSpec, embedding_spec
from ragway.stack import Stack, free_port, serve_gateway
from ragway.weights import embedding_model_dir
from server.errors import KnowledgeBaseNotFound
from server.rag.records import KnowledgeBase, Metadata
from server.rag.store import ChromaStore
from server.rag.versions import chunk_id
from server.settings import RagSettings

DIMS = 384
EMBEDDING_MODEL = "all-minilm-l6-v2"


def ms(values: list[float], q: float) -> float:
    return round(percentile(values, q) * 1000, 2)


def unit_vectors(rng: np.random.Generator, count: int) -> list[list[float]]:
    vectors = rng.standard_normal((count, DIMS), dtype=np.float32)
    normed: list[list[float]] = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).tolist()
    return normed


async def _ingest_ids(store: ChromaStore, name: str) -> bool:
    """Whether the stored chunks have ingest's ids (earlier runs of this benchmark did not)."""
    first = await store.read(name, {"document_id": "doc-0"}, limit=1, with_text=False)
    return bool(first) and first[0].id in {chunk_id(name, "doc-0", p) for p in range(8)}


async def fill(store: ChromaStore, name: str, size: int, rng: np.random.Generator) -> float:
    """A knowledge base of `size` random chunks, made unless it is already there; build time.
    Ids and metadata are what ingest writes (version 0: chunks as before versions existed), so
    that searches check versions as they do on real knowledge bases (server/rag/versions.py)."""
    try:
        if await store.count(name) == size and await _ingest_ids(store, name):
            return 0.0
        await store.delete(name)
    except KnowledgeBaseNotFound:
        pass
    await store.create(KnowledgeBase(name, "benchmark", EMBEDDING_MODEL, "open", 200, 40, 0))
    started = time.perf_counter()
    for at in range(0, size, 5000):
        count = min(5000, size - at)
        ids = [chunk_id(name, f"doc-{(at + i) // 8}", (at + i) % 8) for i in range(count)]
        texts = [f"Passage {at + i} on the {WORDS[(at + i) % len(WORDS)]}." for i in range(count)]
        metas: list[Metadata] = [
            {"document_id": f"doc-{(at + i) // 8}", "position": (at + i) % 8} for i in range(count)
        ]
        await store.upsert(name, ids, unit_vectors(rng, count), texts, metas)
    return time.perf_counter() - started


async def retrieval(data_dir: Path, sizes: list[int], queries: int) -> list[dict[str, Any]]:
    # Building 100k chunks takes upserts of thousands of vectors, each longer than the
    # gateway's default store timeout on a loaded machine; searches take milliseconds.
    store = ChromaStore(RagSettings(data_dir=data_dir, store_timeout=300.0))
    rng = np.random.default_rng(7)
    rows = []
    try:
        for size in sizes:
            name = f"bench-{size}"
            built = await fill(store, name, size, rng)
            probes = unit_vectors(rng, queries + 20)
            took = []
            for i, probe in enumerate(probes):
                started = time.perf_counter()
                await store.query(name, probe, 4, None)
                if i >= 20:  # the first searches load the index
                    took.append(time.perf_counter() - started)
            row = {
                "chunks": size,
                "p50_ms": ms(took, 50),
                "p99_ms": ms(took, 99),
                "build_s": round(built, 1) or None,
                "queries": len(took),
            }
            print(f"retrieval {row}", file=sys.stderr)
            rows.append(row)
    finally:
        await store.aclose()
    return rows


@contextmanager
def workers(
    run_dir: Path, embedding_url: str | None, threads: int, cpus: str
) -> Iterator[tuple[str, str]]:
    """The fake chat worker, and a MiniLM embedding worker unless one is given (pinned to
    `cpus`); their URLs. The chat worker inherits this process's CPUs."""
    stack = Stack(run_dir / "logs", sys.stderr)
    ports = [free_port(), free_port()]
    chat = ProcessSpec(
        "fake-chat",
        [sys.executable, "-m", "benchmarks.fake_chat", "--port", str(ports[0])],
        ready_url=f"http://127.0.0.1:{ports[0]}/health",
    )
    try:
        stack.start(chat)
        if embedding_url is None:
            spec = embedding_spec(
                embedding_model_dir(), EMBEDDING_MODEL, host="127.0.0.1", port=ports[1]
            )
            # On a small shared machine the runtimes' default (a thread per core) collapses
            # under contention: one short query took 0.2-1.5 s with 2 threads, 37 ms with 1.
            pinned = ["taskset", "-c", cpus, *spec.argv]
            stack.start(replace(spec, argv=pinned, env={"RAGWAY_EMBED_THREADS": str(threads)}))
            embedding_url = f"http://127.0.0.1:{ports[1]}"
        stack.wait_ready(300)
        yield f"http://127.0.0.1:{ports[0]}", embedding_url
    finally:
        stack.stop()


def ttft(client: httpx.Client, model: str, question: str) -> float:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": question}],
    }
    started = time.perf_counter()
    first = None
    with client.stream("POST", "/chat/completions", json=body) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if first is None and line.startswith("data: {"):
                first = time.perf_counter() - started
    assert first is not None, "no event"
    return first


def embed_once(client: httpx.Client, question: str) -> float:
    started = time.perf_counter()
    client.post("/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": question})
    return time.perf_counter() - started


def added_ttft(base: str, embedding: str, chats: int) -> dict[str, Any]:
    """TTFT with and without RAG, interleaved; and, for scale, the query embedding alone."""
    times: dict[str, list[float]] = {"bench-rag": [], "bench-chat": [], "embedding": []}
    with (
        httpx.Client(base_url=base, timeout=60) as client,
        httpx.Client(base_url=embedding) as worker,
    ):
        for i in range(chats + 10):
            question = f"How do I reset the {WORDS[i % len(WORDS)]} after firmware update {i}?"
            took = [
                ttft(client, "bench-rag", question),
                ttft(client, "bench-chat", question),
                embed_once(worker, question),
            ]
            if i >= 10:  # warm-up
                for kind, value in zip(times, took, strict=True):
                    times[kind].append(value)
    rag, plain = times["bench-rag"], times["bench-chat"]
    row = {
        "chats": chats,
        "rag_p50_ms": ms(rag, 50),
        "rag_p99_ms": ms(rag, 99),
        "plain_p50_ms": ms(plain, 50),
        "plain_p99_ms": ms(plain, 99),
        "added_p50_ms": round((statistics.median(rag) - statistics.median(plain)) * 1000, 2),
        "added_p99_ms": round((percentile(rag, 99) - percentile(plain, 99)) * 1000, 2),
        "embedding_p50_ms": ms(times["embedding"], 50),
    }
    print(f"ttft {row}", file=sys.stderr)
    return row


def gateway_settings(chat: str, embedding: str, data_dir: Path, kb: str) -> dict[str, object]:
    return {
        "workers": [
            {"name": "fake-chat", "url": chat, "kind": "chat"},
            {"name": "embedding", "url": embedding, "kind": "embedding"},
        ],
        "rag": {
            "data_dir": str(data_dir),
            "virtual_models": {"bench-rag": {"model": "bench-chat", "knowledge_base": kb}},
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rag_bench", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--documents", type=int, default=200, help="for the ingest run")
    parser.add_argument(
        "--load-documents", type=int, default=500, help="ingested while queries are timed"
    )
    parser.add_argument("--idle-rounds", type=int, default=100, help="queries timed idle")
    parser.add_argument("--model-cpus", default="1", help="the embedding worker's core(s)")
    parser.add_argument("--client-cpus", default="0", help="gateway, chat worker, this process")
    parser.add_argument("--chats", type=int, default=300, help="of each kind, for TTFT")
    parser.add_argument("--embedding-url", help="an embedding worker (default: start MiniLM)")
    parser.add_argument("--embedding-threads", type=int, default=1, help="its intra-op threads")
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/results/raw/rag"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    # Everything started from here inherits these CPUs; the embedding worker is pinned apart.
    pin_self({int(c) for c in args.client_cpus.split(",")})
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "retrieval": asyncio.run(retrieval(args.data_dir, args.sizes, args.queries)),
        "ttft_chunks": max(args.sizes),
    }
    with ExitStack() as stack:
        chat, embedding = stack.enter_context(
            workers(args.out / "raw", args.embedding_url, args.embedding_threads, args.model_cpus)
        )
        settings = gateway_settings(chat, embedding, args.data_dir, f"bench-{max(args.sizes)}")
        base = stack.enter_context(serve_gateway(settings, args.out / "raw", name="rag-bench"))
        results["ttft"] = added_ttft(base, embedding, args.chats)
        model_cpus = {int(c) for c in args.model_cpus.split(",")}
        results["ingest"] = asyncio.run(
            ingest(base, embedding, args.documents, model_cpus, args.embedding_threads)
        )
        results["under_ingest"] = asyncio.run(
            queries_under_ingest(base, embedding, args.load_documents, args.idle_rounds)
        )
        results["load_average"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rag.json").write_text(
        json.dumps({**results, "parameters": vars(args)}, indent=1, default=str)
    )
    section = markdown({**results, "parameters": vars(args)})
    write_section(Path(__file__).with_name("README.md"), section)
    print(section)


if __name__ == "__main__":
    main()
