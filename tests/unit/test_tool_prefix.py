"""Prefix-aware routing with tools: the tool definitions are part of the prompt prefix, where
chat templates render them (after the system prompt, before the conversation)."""

from __future__ import annotations

from typing import Any

import orjson

from router.prefix import block_hashes
from server.services.routing import prompt_prefix

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": "A tool with a long description. " * 4,
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    for i in range(3)
]
SYSTEM = {"role": "system", "content": "You are a careful agent. " * 8}


def body(question: str, tools: Any = TOOLS) -> dict[str, Any]:
    request: dict[str, Any] = {"messages": [SYSTEM, {"role": "user", "content": question}]}
    if tools is not None:
        request["tools"] = tools
    return request


def shared(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_requests_sharing_system_and_tools_share_those_blocks() -> None:
    a = prompt_prefix(body("What is the weather in Paris?"), 64)
    b = prompt_prefix(body("Book a table for two."), 64)
    system_and_tools = len(str(SYSTEM)) + len(str(TOOLS))
    assert shared(a, b) >= system_and_tools // 64 - 2
    # Other tools: only the system prompt is shared.
    other = [
        {**t, "function": {**t["function"], "name": "x" + t["function"]["name"]}} for t in TOOLS
    ]
    c = prompt_prefix(body("What is the weather in Paris?", other), 64)
    assert shared(a, c) < shared(a, b)
    assert shared(a, c) >= len(str(SYSTEM)) // 64 - 2


def test_without_tools_the_prefix_is_the_messages_as_before() -> None:
    request = body("Question one?", tools=None)
    expected = block_hashes(orjson.dumps(request["messages"]).decode(), 64)
    assert prompt_prefix(request, 64) == expected
    assert prompt_prefix(body("Question one?", tools=[]), 64) == expected
