"""The embedding worker in-process (lifespan included) against a fake encoder."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.serving import served
from workers.embedding.app import create_app
from workers.embedding.encoder import Vectors
from workers.embedding.protocol import EmbeddingResponse, ModelList
from workers.embedding.settings import EmbeddingWorkerSettings

DIM = 8
MODEL = "tiny-embed"


class HashEncoder:
    """A deterministic unit vector per text; one token per word."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    @property
    def dimension(self) -> int:
        return DIM

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.batches.append(len(texts))
        rows = [
            np.frombuffer(hashlib.sha256(t.encode()).digest()[: DIM * 4], dtype="<u4")
            for t in texts
        ]
        vectors = np.asarray(rows, dtype=np.float32) - 2.0**31
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / norms, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


@dataclass
class Worker:
    client: httpx.AsyncClient
    encoder: HashEncoder
    registry: CollectorRegistry

    async def embed(self, **body: Any) -> httpx.Response:
        return await self.client.post("/v1/embeddings", json={"model": MODEL, **body})


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    encoder = HashEncoder()
    registry = CollectorRegistry()
    settings = EmbeddingWorkerSettings(
        served_model_name=MODEL, max_inputs_per_request=4, max_queue=16
    )
    app = create_app(settings, encoder=encoder, registry=registry)
    async with served(app, "http://worker") as client:
        yield Worker(client, encoder, registry)


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["param"] == param
    return str(error["message"])


def vectors_of(response: httpx.Response) -> np.ndarray[Any, np.dtype[np.float32]]:
    body = EmbeddingResponse.model_validate(response.json())
    assert [item.index for item in body.data] == list(range(len(body.data)))
    rows = [
        np.frombuffer(base64.b64decode(item.embedding), dtype="float32")
        if isinstance(item.embedding, str)
        else np.asarray(item.embedding, dtype=np.float32)
        for item in body.data
    ]
    return np.stack(rows)


async def test_string_input(worker: Worker) -> None:
    response = await worker.embed(input="hello there world")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == MODEL
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert body["data"][0]["object"] == "embedding"
    vectors = vectors_of(response)
    assert vectors.shape == (1, DIM)
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-6)


async def test_list_input_keeps_order(worker: Worker) -> None:
    texts = ["a b", "c", "d e f"]
    together = vectors_of(await worker.embed(input=texts))
    alone = [vectors_of(await worker.embed(input=t))[0] for t in texts]

    np.testing.assert_allclose(together, np.stack(alone), atol=1e-7)
    body = (await worker.embed(input=texts)).json()
    assert body["usage"]["prompt_tokens"] == 6


async def test_base64_and_float_agree(worker: Worker) -> None:
    texts = ["one", "two"]
    floats = await worker.embed(input=texts, encoding_format="float")
    encoded = await worker.embed(input=texts, encoding_format="base64")

    assert isinstance(encoded.json()["data"][0]["embedding"], str)
    np.testing.assert_allclose(vectors_of(floats), vectors_of(encoded), atol=1e-6)


async def test_dimensions(worker: Worker) -> None:
    assert (await worker.embed(input="x", dimensions=DIM)).status_code == 200
    assert (await worker.embed(input="x", dimensions=None)).status_code == 200
    assert_openai_error(await worker.embed(input="x", dimensions=DIM // 2), 400, "dimensions")
    assert_openai_error(await worker.embed(input="x", dimensions="8"), 400, "dimensions")


@pytest.mark.parametrize("ids", [[1, 2, 3], [[1, 2], [3]]])
async def test_token_ids_are_refused(worker: Worker, ids: list[Any]) -> None:
    message = assert_openai_error(await worker.embed(input=ids), 400, "input")
    assert "token" in message
    assert "cl100k_base" in message


@pytest.mark.parametrize(
    "value", ["", [], ["ok", ""], 42, None, ["a", 1], {"text": "x"}, [True], ["a"] * 5]
)
async def test_bad_input_is_400(worker: Worker, value: Any) -> None:
    assert_openai_error(await worker.embed(input=value), 400, "input")


async def test_bad_fields_are_400(worker: Worker) -> None:
    assert_openai_error(
        await worker.embed(input="x", encoding_format="int8"), 400, "encoding_format"
    )
    missing = await worker.client.post("/v1/embeddings", json={"input": "x"})
    assert_openai_error(missing, 400, "model")


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"'])
async def test_malformed_json_is_400(worker: Worker, raw: bytes) -> None:
    response = await worker.client.post(
        "/v1/embeddings", content=raw, headers={"content-type": "application/json"}
    )
    assert_openai_error(response, 400)
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_unknown_model_is_404(worker: Worker) -> None:
    response = await worker.client.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}
    )
    assert_openai_error(response, 404, "model")
    assert response.json()["error"]["code"] == "model_not_found"


async def test_unknown_route_and_method(worker: Worker) -> None:
    assert_openai_error(await worker.client.get("/v1/nope"), 404)
    wrong_method = await worker.client.get("/v1/embeddings")
    assert_openai_error(wrong_method, 405)
    assert "POST" in wrong_method.headers["allow"]


async def test_models(worker: Worker) -> None:
    response = await worker.client.get("/v1/models")

    assert response.status_code == 200
    listed = ModelList.model_validate(response.json())
    assert [card.id for card in listed.data] == [MODEL]
    card = response.json()["data"][0]
    assert set(card) == {"id", "object", "created", "owned_by"}
    assert (card["object"], card["owned_by"]) == ("model", "ragway")
    assert isinstance(card["created"], int)


async def test_health(worker: Worker) -> None:
    response = await worker.client.get("/health")
    assert response.status_code == 200


async def test_metrics(worker: Worker) -> None:
    await worker.embed(input=["a", "b", "c"])
    await worker.embed(input="d")
    await worker.embed(input="e", model="nope")

    text = (await worker.client.get("/metrics")).text

    assert "ragway_embedding_batch_size_count 2.0" in text
    assert "ragway_embedding_items_total 4.0" in text
    assert 'ragway_embedding_requests_total{status="200"} 2.0' in text
    assert 'ragway_embedding_requests_total{status="404"} 1.0' in text
    assert "ragway_embedding_queue_wait_seconds_count 4.0" in text
    assert worker.encoder.batches == [3, 1]
    assert "ragway_embedding_queued_inputs 0.0" in text  # what flow control scrapes


async def test_oversized_body_is_413() -> None:
    settings = EmbeddingWorkerSettings(served_model_name=MODEL, max_body_bytes=64)
    app = create_app(settings, encoder=HashEncoder(), registry=CollectorRegistry())
    async with served(app, "http://w") as c:
        response = await c.post("/v1/embeddings", json={"model": MODEL, "input": "x" * 100})
    assert_openai_error(response, 413)


async def test_priority_header(worker: Worker) -> None:
    body = {"model": MODEL, "input": ["a b", "c"]}
    for value in ("interactive", "bulk", " Interactive "):
        response = await worker.client.post(
            "/v1/embeddings", json=body, headers={"x-ragway-priority": value}
        )
        assert response.status_code == 200, response.text
        assert vectors_of(response).shape == (2, DIM)
    bad = await worker.client.post(
        "/v1/embeddings", json=body, headers={"x-ragway-priority": "urgent"}
    )
    assert "x-ragway-priority" in assert_openai_error(bad, 400)
