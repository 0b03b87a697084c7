"""Bounded Chroma, in-process: against a TCP listener that accepts and never answers (a hung
Chroma server), knowledge-base calls answer 503 within `rag.store_timeout`, liveness stays fast,
and /readyz reports the store degraded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness
from tests.api.rag_gateway import rag_gateway

TIMEOUT = 0.5


@pytest.fixture
async def hung_port() -> AsyncIterator[int]:
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never answered, never closed until the test ends

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()


@pytest.fixture
async def hung(
    hung_port: int, tmp_path: Path, token_decoder: TokenDecoder
) -> AsyncIterator[Harness]:
    async with rag_gateway(
        tmp_path,
        token_decoder,
        chroma_url=f"http://127.0.0.1:{hung_port}",
        store_timeout=TIMEOUT,
    ) as harness:
        yield harness


async def test_calls_to_a_hung_chroma_answer_503_in_time(hung: Harness) -> None:
    calls = [
        hung.client.post("/v1/knowledge_bases", json={"name": "docs"}),
        hung.client.get("/v1/knowledge_bases"),
        hung.client.get("/v1/knowledge_bases/docs"),
        hung.client.post("/v1/knowledge_bases/docs/query", json={"query": "x"}),
        *(hung.client.get("/v1/knowledge_bases") for _ in range(12)),  # more than 8 threads
    ]
    started = time.perf_counter()
    answers = await asyncio.gather(*calls)
    elapsed = time.perf_counter() - started
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] in {
            "vector_store_timeout",
            "vector_store_unavailable",
        }
    assert elapsed < TIMEOUT * len(calls)  # each call is bounded on its own, not queued
    ready = (await hung.client.get("/readyz")).json()
    assert ready["vector_store"]["state"] == "degraded"
    assert "timed out" in ready["vector_store"]["reason"]


async def test_liveness_stays_fast_while_chroma_hangs(hung: Harness) -> None:
    pending = [asyncio.ensure_future(hung.client.get("/v1/knowledge_bases")) for _ in range(10)]
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    assert (await hung.client.get("/healthz")).status_code == 200
    assert time.perf_counter() - started < TIMEOUT / 2
    assert all(r.status_code == 503 for r in await asyncio.gather(*pending))


async def test_chat_with_rag_fails_open_quickly(hung: Harness) -> None:
    response = await hung.client.post(
        "/v1/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "rag": {"knowledge_base": "docs"},
        },
    )
    assert response.status_code == 200
    assert response.headers["x-ragway-rag"] == "fail-open"
