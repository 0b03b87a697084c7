"""One SSE framing: a worker that frames its stream with CRLF (or CR) gets the same treatment as
an LF one: ragway's forced usage chunk is removed, tokens are counted, RAG sources ride on the
first chunk, and ragway's own events use the worker's line ending."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness
from tests.api.rag_gateway import add_docs, rag_gateway
from tests.fakes.worker import chunk_event

CHAT = "/v1/chat/completions"
QUESTION = [{"role": "user", "content": "What is the product code of the Zephyr router?"}]
DOCS = {"zephyr": "The Zephyr router product code is QX-4471-ZT."}


def framed(events: list[bytes], line: bytes) -> bytes:
    return b"".join(e.replace(b"\n", line) for e in events)


@pytest.mark.parametrize("line", [b"\r\n", b"\r", b"\n"])
async def test_usage_is_stripped_and_counted_and_sources_attached(
    line: bytes, tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    async with rag_gateway(tmp_path, token_decoder) as rag:
        await add_docs(rag, "docs", DOCS)
        events = [chunk_event("tiny-chat", t) for t in ("a", "b")]
        rag.chat.stream_events, rag.chat.line = events, line
        response = await rag.client.post(
            CHAT, json={"model": "support-bot", "messages": QUESTION, "stream": True}
        )
        assert response.status_code == 200
        assert rag.chat.received[-1]["stream_options"] == {"include_usage": True}
        first, rest = response.content.split(line + line, 1)
        payload = orjson.loads(first.removeprefix(b"data: "))
        assert payload["sources"][0]["document_id"] == "zephyr"
        # The usage chunk ragway asked for is gone; the rest is relayed byte for byte.
        assert rest == framed([events[1], b"data: [DONE]\n\n"], line)
        labels = {"model": "support-bot"}
        assert rag.metric("ragway_prompt_tokens_total", labels) == 3
        assert rag.metric("ragway_completion_tokens_total", labels) == 2


async def test_broken_crlf_stream_gets_a_crlf_error_event(harness: Harness) -> None:
    harness.chat.line = b"\r\n"
    harness.chat.stream_events = [chunk_event("tiny-chat", "a")]
    harness.chat.stream_tail = b""  # ends without [DONE]
    response = await harness.client.post(
        CHAT, json={"model": "gpt-4o-mini", "messages": QUESTION, "stream": True}
    )
    events = response.content.split(b"\r\n\r\n")
    assert events[-1] == b""
    assert b"\n" not in b"".join(e.replace(b"\r\n", b"") for e in events)
    assert orjson.loads(events[-3].removeprefix(b"data: "))["error"]
    assert events[-2] == b"data: [DONE]"
