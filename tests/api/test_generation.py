"""Chat and completions through the gateway: passthrough, aliases, SSE relay."""

from __future__ import annotations

import orjson
import pytest

from tests.api.conftest import Harness
from tests.fakes.worker import chunk_event, usage_event

# Fields ragway does not model must reach the worker untouched (DEVELOPERS: "every field").
RICH_CHAT = {
    "model": "tiny-chat",
    "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ],
    "max_completion_tokens": 7,
    "n": 2,
    "stop": ["\n"],
    "seed": 42,
    "logprobs": True,
    "top_logprobs": 2,
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "auto",
    "response_format": {"type": "json_object"},
    "top_k": 5,
    "repetition_penalty": 1.1,
}


async def test_body_is_forwarded_byte_for_byte(harness: Harness) -> None:
    raw = orjson.dumps(RICH_CHAT)
    response = await harness.client.post("/v1/chat/completions", content=raw)
    assert response.status_code == 200
    assert harness.chat.raw_bodies == [raw]
    assert response.json()["choices"][0]["message"]["content"] == "Hello"


async def test_alias_rewrites_only_the_model(harness: Harness) -> None:
    response = await harness.client.post(
        "/v1/chat/completions", json={**RICH_CHAT, "model": "gpt-4o-mini"}
    )
    assert response.status_code == 200
    assert harness.chat.received == [{**RICH_CHAT, "model": "tiny-chat"}]


async def test_completions_route(harness: Harness) -> None:
    body = {"model": "tiny-chat", "prompt": [1, 2, 3], "max_tokens": 3, "echo": True}
    response = await harness.client.post("/v1/completions", json=body)
    assert response.status_code == 200
    assert harness.chat.received == [body]


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions"])
async def test_stream_bytes_are_relayed_unchanged(harness: Harness, route: str) -> None:
    events = [chunk_event("tiny-chat", t) for t in ("a", "b", "c")]
    harness.chat.stream_events = events
    body = {"model": "tiny-chat", "stream": True, "stream_options": {"include_usage": True}}
    body |= {"messages": [{"role": "user", "content": "x"}]} if "chat" in route else {"prompt": "x"}
    response = await harness.client.post(route, json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    usage = usage_event("tiny-chat")
    assert response.content == b"".join(events) + usage + b"data: [DONE]\n\n"
    assert harness.chat.received[0]["stream_options"] == {"include_usage": True}


async def test_events_split_across_reads_are_relayed_whole(harness: Harness) -> None:
    whole = chunk_event("tiny-chat", "abc")
    harness.chat.stream_events = [whole[:10], whole[10:25], whole[25:]]
    response = await harness.client.post(
        "/v1/chat/completions",
        json={"model": "tiny-chat", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.content == whole + b"data: [DONE]\n\n"


async def test_stream_broken_midway_ends_with_in_band_error(harness: Harness) -> None:
    first = chunk_event("tiny-chat", "a")
    # A whole event, then half an event, then the worker goes away without [DONE].
    harness.chat.stream_events = [first, chunk_event("tiny-chat", "b")[:15]]
    harness.chat.stream_tail = b""
    response = await harness.client.post(
        "/v1/chat/completions",
        json={"model": "tiny-chat", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 200
    events = response.content.split(b"\n\n")
    assert response.content.startswith(first)
    error = orjson.loads(events[1].removeprefix(b"data: "))
    assert error["error"]["code"] == "bad_upstream_response"
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert response.content.endswith(b"data: [DONE]\n\n")
    # The client heard it in-band; the operator sees it in the metrics (and a warning).
    broken = {"error_type": "upstream_bad_response"}
    assert harness.metric("ragway_upstream_errors_total", broken) == 1


async def test_stream_that_ends_before_any_event_is_a_502(harness: Harness) -> None:
    harness.chat.stream_events = [b'data: {"partial']
    harness.chat.stream_tail = b""
    response = await harness.client.post(
        "/v1/chat/completions",
        json={"model": "tiny-chat", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "bad_upstream_response"


async def test_request_id_is_returned_and_forwarded(harness: Harness) -> None:
    response = await harness.client.post(
        "/v1/chat/completions",
        json={"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-request-id": "req-123"},
    )
    assert response.headers["x-request-id"] == "req-123"
    assert harness.chat.headers_seen[0]["x-request-id"] == "req-123"
    generated = await harness.client.get("/v1/models")
    assert len(generated.headers["x-request-id"]) == 32
