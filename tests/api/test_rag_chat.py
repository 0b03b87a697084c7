"""RAG on chat completions, in-process: what the worker receives, what the client gets back,
the token budget, and failing open or closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from server.rag.records import KnowledgeBase, RetrievedChunk
from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness
from tests.api.rag_gateway import add_docs, rag_gateway
from tests.api.test_errors import assert_openai_error
from tests.fakes.worker import chunk_event, fake_token_count

CHAT = "/v1/chat/completions"
DOCS = {
    "zephyr": "The Zephyr router product code is QX-4471-ZT.",
    "bananas": "Bananas are yellow and sweet.",
    "routers": "Every router ships with a power cable.",
}
QUESTION = [{"role": "user", "content": "What is the product code of the Zephyr router?"}]


@pytest.fixture
async def rag(tmp_path: Path, token_decoder: TokenDecoder) -> AsyncIterator[Harness]:
    async with rag_gateway(tmp_path, token_decoder) as harness:
        await add_docs(harness, "docs", DOCS)
        yield harness


def system_context(body: dict[str, Any]) -> str:
    (system,) = [m for m in body["messages"] if m["role"] == "system"]
    content: str = system["content"]
    return content


async def test_virtual_model_injects_context_and_returns_sources(rag: Harness) -> None:
    response = await rag.client.post(CHAT, json={"model": "support-bot", "messages": QUESTION})
    assert response.status_code == 200
    sent = rag.chat.received[-1]
    assert sent["model"] == "tiny-chat"  # support-bot -> gpt-4o-mini -> tiny-chat
    assert "rag" not in sent
    assert "QX-4471-ZT" in system_context(sent)
    assert sent["messages"][-1] == QUESTION[0]
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "Hello"  # the worker's answer, intact
    sources = body["sources"]
    assert sources[0]["document_id"] == "zephyr"
    assert sources[0]["knowledge_base"] == "docs"
    assert len(sources) == 3  # the virtual model's top_k
    assert response.headers["x-ragway-sources"] == ",".join(s["id"] for s in sources)
    assert "x-ragway-rag" not in response.headers
    # The query was embedded by the knowledge base's embedding model, on the embedding worker,
    # as base64 float32 (no decimal floats to write and parse).
    assert rag.embed.received[-1] == {
        "model": "tiny-embed",
        "input": [QUESTION[0]["content"]],
        "encoding_format": "base64",
    }


async def test_extra_body_rag_on_a_plain_model(rag: Harness) -> None:
    body = {
        "model": "tiny-chat",
        "messages": [{"role": "system", "content": "Be brief."}, *QUESTION],
        "rag": {"knowledge_base": "docs", "top_k": 1},
        "temperature": 0.2,
    }
    response = await rag.client.post(CHAT, json=body)
    assert response.status_code == 200
    sent = rag.chat.received[-1]
    assert sent["temperature"] == 0.2
    assert [m["role"] for m in sent["messages"]] == ["system", "system", "user"]
    assert sent["messages"][0]["content"] == "Be brief."
    assert [s["document_id"] for s in response.json()["sources"]] == ["zephyr"]


async def test_request_options_override_the_virtual_model(rag: Harness) -> None:
    response = await rag.client.post(
        CHAT,
        json={
            "model": "support-bot",
            "messages": QUESTION,
            "rag": {"top_k": 2, "filter": {"document_id": {"$ne": "zephyr"}}},
        },
    )
    ids = [s["document_id"] for s in response.json()["sources"]]
    assert len(ids) == 2
    assert "zephyr" not in ids


async def test_stream_carries_sources_on_the_first_chunk_only(rag: Harness) -> None:
    events = [chunk_event("tiny-chat", t) for t in ("a", "b")]
    rag.chat.stream_events = events
    response = await rag.client.post(
        CHAT, json={"model": "support-bot", "messages": QUESTION, "stream": True}
    )
    assert response.status_code == 200
    assert response.headers["x-ragway-sources"]
    first, rest = response.content.split(b"\n\n", 1)
    payload = orjson.loads(first.removeprefix(b"data: "))
    assert payload["sources"][0]["document_id"] == "zephyr"
    assert payload["choices"] == orjson.loads(events[0].removeprefix(b"data: "))["choices"]
    assert rest == events[1] + b"data: [DONE]\n\n"  # relayed byte for byte
    assert "QX-4471-ZT" in system_context(rag.chat.received[-1])


async def test_without_rag_the_body_is_forwarded_byte_for_byte(rag: Harness) -> None:
    raw = orjson.dumps({"model": "tiny-chat", "messages": QUESTION, "seed": 1})
    response = await rag.client.post(CHAT, content=raw)
    assert rag.chat.raw_bodies[-1] == raw
    assert "sources" not in response.json()
    assert "x-ragway-sources" not in response.headers


async def test_virtual_models_are_listed(rag: Harness) -> None:
    cards = {c["id"]: c for c in (await rag.client.get("/v1/models")).json()["data"]}
    assert cards["support-bot"]["root"] == "tiny-chat"


async def test_budget_drops_the_lowest_scoring_chunks(rag: Harness) -> None:
    rag.chat.max_model_len = 75
    body: dict[str, Any] = {"model": "support-bot", "messages": QUESTION, "max_tokens": 10}
    response = await rag.client.post(CHAT, json=body)
    used = [s["document_id"] for s in response.json()["sources"]]
    assert used == ["zephyr"]  # the best one fits, the two weaker ones do not
    sent = rag.chat.received[-1]
    assert fake_token_count(sent) + body["max_tokens"] <= rag.chat.max_model_len
    assert all(r["model"] == "tiny-chat" for r in rag.chat.tokenize_requests)
    dropped = rag.metric("ragway_rag_chunks_dropped_total", {})
    assert dropped == 2


async def test_a_context_that_fits_is_counted_in_one_call(rag: Harness) -> None:
    """The prompt and the whole context: two /tokenize calls, not one per passage."""
    before = len(rag.chat.tokenize_requests)
    response = await rag.client.post(CHAT, json={"model": "support-bot", "messages": QUESTION})
    assert len(response.json()["sources"]) == 3
    calls = rag.chat.tokenize_requests[before:]
    assert [("messages" in c, "prompt" in c) for c in calls] == [(True, False), (False, True)]
    assert calls[1]["prompt"] == system_context(rag.chat.received[-1])


async def test_no_room_means_no_context(rag: Harness) -> None:
    rag.chat.max_model_len = 30
    response = await rag.client.post(CHAT, json={"model": "support-bot", "messages": QUESTION})
    assert response.status_code == 200
    assert response.json()["sources"] == []
    assert rag.chat.received[-1]["messages"] == QUESTION


async def test_query_turns_use_earlier_user_turns(rag: Harness) -> None:
    messages = [
        {"role": "user", "content": "Tell me about the Zephyr router."},
        {"role": "assistant", "content": "It is a router."},
        {"role": "user", "content": "And its code?"},
    ]
    body = {"model": "support-bot", "messages": messages, "rag": {"query_turns": 2}}
    await rag.client.post(CHAT, json=body)
    assert rag.embed.received[-1]["input"] == ["Tell me about the Zephyr router.\nAnd its code?"]


@pytest.mark.parametrize(
    ("rag_field", "status", "code"),
    [
        ({"knowledge_base": "nope"}, 404, "knowledge_base_not_found"),
        ({"knowledge_base": "docs", "filter": {"a": {"$regex": "x"}}}, 400, None),
        ({"knowledge_base": "docs", "filter": {"$and": "x"}}, 400, None),
        ({"knowledge_base": "docs", "topk": 3}, 400, None),
        ({"knowledge_base": "docs", "top_k": 0}, 400, None),
        ({"top_k": 3}, 400, "missing_knowledge_base"),
        ("docs", 400, None),
    ],
)
async def test_bad_rag_options_are_4xx(
    rag: Harness, rag_field: Any, status: int, code: str | None
) -> None:
    response = await rag.client.post(
        CHAT, json={"model": "tiny-chat", "messages": QUESTION, "rag": rag_field}
    )
    error = assert_openai_error(response, status, code)
    assert error["param"] in {"rag", "knowledge_base"}
    assert rag.chat.received == []


async def test_fail_open_answers_without_context(rag: Harness) -> None:
    rag.transport.failures["embed.test"] = httpx.ConnectError("embedding worker gone")
    response = await rag.client.post(CHAT, json={"model": "support-bot", "messages": QUESTION})
    assert response.status_code == 200
    assert response.headers["x-ragway-rag"] == "fail-open"
    assert response.json()["sources"] == []
    assert rag.chat.received[-1]["messages"] == QUESTION
    assert rag.metric("ragway_rag_retrievals_total", {"outcome": "failed_open"}) == 1


async def test_fail_closed_is_a_503(tmp_path: Path, token_decoder: TokenDecoder) -> None:
    async with rag_gateway(tmp_path, token_decoder) as rag:
        await add_docs(rag, "docs", DOCS, fail_mode="closed")
        rag.transport.failures["embed.test"] = httpx.ConnectError("embedding worker gone")
        for stream in (False, True):
            response = await rag.client.post(
                CHAT, json={"model": "support-bot", "messages": QUESTION, "stream": stream}
            )
            assert_openai_error(response, 503, "retrieval_unavailable")
        assert rag.chat.received == []
        assert rag.metric("ragway_rag_retrievals_total", {"outcome": "failed_closed"}) == 2


class SlowRetriever:
    async def retrieve(self, kb: KnowledgeBase, query: str, **options: Any) -> list[RetrievedChunk]:
        await asyncio.sleep(5)
        return []


async def test_retrieval_timeout_fails_open(tmp_path: Path, token_decoder: TokenDecoder) -> None:
    async with rag_gateway(
        tmp_path, token_decoder, retriever=SlowRetriever(), retrieval_timeout=0.2
    ) as rag:
        await add_docs(rag, "docs", DOCS)
        response = await rag.client.post(
            CHAT, json={"model": "support-bot", "messages": QUESTION, "stream": True}
        )
        assert response.status_code == 200
        assert response.headers["x-ragway-rag"] == "fail-open"


async def test_unreachable_chroma_uses_the_default_fail_mode(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    # Nothing listens on port 9: Chroma cannot be asked, not even for the knowledge base's mode.
    async with rag_gateway(
        tmp_path, token_decoder, chroma_url="http://127.0.0.1:9", fail_mode="closed"
    ) as rag:
        response = await rag.client.post(CHAT, json={"model": "support-bot", "messages": QUESTION})
        assert_openai_error(response, 503, "retrieval_unavailable")
        listed = await rag.client.get("/v1/knowledge_bases")
        assert_openai_error(listed, 503, "vector_store_unavailable")


async def test_worker_errors_are_relayed_unchanged_with_rag(rag: Harness) -> None:
    rag.chat.status = 400
    response = await rag.client.post(CHAT, json={"model": "support-bot", "messages": QUESTION})
    assert response.status_code == 400
    assert response.content == rag.chat.error_body  # no `sources` added to an error


async def test_query_embedding_is_marked_interactive_and_ingest_bulk(rag: Harness) -> None:
    """The embedding worker's batcher puts interactive requests on their own lane, so a RAG
    chat's query embedding never waits behind ingest batches."""
    # The fixture's ingest: every embedding request so far carried the bulk mark.
    assert {h.get("x-ragway-priority") for h in rag.embed.headers_seen} == {"bulk"}
    response = await rag.client.post(CHAT, json={"model": "support-bot", "messages": QUESTION})
    assert response.status_code == 200
    assert rag.embed.headers_seen[-1]["x-ragway-priority"] == "interactive"
