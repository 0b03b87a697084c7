"""Tool calling through the gateway, against fake workers that answer as vLLM does: tool-call
deltas relayed unchanged, usage and metrics counted, and RAG still applied with tools present."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness
from tests.api.rag_gateway import add_docs, rag_gateway
from tests.fakes.worker import usage_event

CHAT = "/v1/chat/completions"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CALL = {
    "id": "chatcmpl-tool-1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
# An agent's second step: the call it made, and the tool's result.
HISTORY = [
    *ASK,
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": CALL["id"], "content": "sunny, 21 C"},
]


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    """One chat.completion.chunk, as vLLM's hermes parser streams a tool call."""
    payload = {
        "id": "chatcmpl-tool",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "tiny-chat",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def fragment(arguments: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}


TOOL_STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk(
        {
            "tool_calls": [
                {
                    "id": CALL["id"],
                    "type": "function",
                    "index": 0,
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk(fragment('{"city": ')),
    chunk(fragment('"Par')),
    chunk(fragment('is"}')),
    chunk({}, finish="tool_calls"),
]


def tokens(harness: Harness, kind: str) -> float | None:
    return harness.metric(f"ragway_{kind}_tokens_total", {"model": "gpt-4o-mini"})


@pytest.mark.parametrize("client_asks_usage", [True, False])
async def test_streamed_tool_call_deltas_are_relayed_unchanged(
    harness: Harness, client_asks_usage: bool
) -> None:
    harness.chat.stream_events = TOOL_STREAM
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": ASK,
        "tools": [WEATHER],
        "tool_choice": "required",
        "stream": True,
    }
    if client_asks_usage:
        body["stream_options"] = {"include_usage": True}
    response = await harness.client.post(CHAT, json=body)
    assert response.status_code == 200
    # The worker got the tools and the choice as the client sent them.
    sent = harness.chat.received[-1]
    assert sent["tools"] == [WEATHER]
    assert sent["tool_choice"] == "required"
    usage = usage_event("tiny-chat") if client_asks_usage else b""
    assert response.content == b"".join(TOOL_STREAM) + usage + b"data: [DONE]\n\n"
    # Usage is counted from the worker's usage chunk either way (ragway asks for it).
    assert tokens(harness, "prompt") == 3
    assert tokens(harness, "completion") == 2
    ttft = {"model": "gpt-4o-mini"}
    assert harness.metric("ragway_time_to_first_token_seconds_count", ttft) == 1


async def test_tool_call_reply_and_agent_follow_up_pass_through(harness: Harness) -> None:
    harness.chat.message = {"role": "assistant", "content": None, "tool_calls": [CALL]}
    harness.chat.finish_reason = "tool_calls"
    first = await harness.client.post(
        CHAT, json={"model": "gpt-4o-mini", "messages": ASK, "tools": [WEATHER]}
    )
    assert first.status_code == 200
    choice = first.json()["choices"][0]
    assert choice["message"]["tool_calls"] == [CALL]
    assert choice["finish_reason"] == "tool_calls"
    # The second step carries the call and the tool's result; both reach the worker intact.
    follow_up = {"model": "gpt-4o-mini", "messages": HISTORY, "tools": [WEATHER]}
    follow_up["tool_choice"] = "none"
    raw = orjson.dumps(follow_up)
    second = await harness.client.post(CHAT, content=raw)
    assert second.status_code == 200
    assert harness.chat.received[-1] == {**follow_up, "model": "tiny-chat"}
    assert tokens(harness, "prompt") == 6  # 3 per answer from the fake worker's usage
    ok = {"route": CHAT, "model": "gpt-4o-mini", "status": "200"}
    assert harness.metric("ragway_requests_total", ok) == 2


@pytest.fixture
async def rag(tmp_path: Path, token_decoder: TokenDecoder) -> AsyncIterator[Harness]:
    async with rag_gateway(tmp_path, token_decoder) as harness:
        await add_docs(harness, "docs", {"paris": "Paris weather station code is PWS-77."})
        yield harness


async def test_rag_with_tools_keeps_tools_and_history_and_counts_them(rag: Harness) -> None:
    body = {"model": "support-bot", "messages": HISTORY, "tools": [WEATHER], "max_tokens": 20}
    response = await rag.client.post(CHAT, json=body)
    assert response.status_code == 200
    assert response.json()["sources"][0]["document_id"] == "paris"
    sent = rag.chat.received[-1]
    assert sent["tools"] == [WEATHER]
    # The context goes in as a system message; the call and its result stay as they were.
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool"]
    assert "PWS-77" in sent["messages"][0]["content"]
    assert sent["messages"][1:] == HISTORY
    # The budget counted the prompt as the worker renders it: with the tool definitions.
    prompt_counts = [r for r in rag.chat.tokenize_requests if "messages" in r]
    assert prompt_counts
    assert prompt_counts[0]["tools"] == [WEATHER]


async def test_rag_stream_with_tool_call_deltas(rag: Harness) -> None:
    rag.chat.stream_events = TOOL_STREAM
    body = {"model": "support-bot", "messages": ASK, "tools": [WEATHER], "stream": True}
    response = await rag.client.post(CHAT, json=body)
    assert response.status_code == 200
    events = [e for e in response.content.split(b"\n\n") if e]
    # The sources ride on the first chunk; every tool-call delta after it is the worker's own.
    first = orjson.loads(events[0].removeprefix(b"data: "))
    assert first["sources"][0]["document_id"] == "paris"
    assert b"\n\n".join(events[1:]) + b"\n\n" == b"".join(TOOL_STREAM[1:]) + b"data: [DONE]\n\n"
