"""Metrics from traffic: tokens from usage, TTFT and inter-token gaps, and the usage chunk
ragway asks for itself kept out of the client's stream."""

from __future__ import annotations

from tests.api.conftest import Harness
from tests.fakes.worker import chunk_event, usage_event

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
EVENTS = [chunk_event("tiny-chat", t) for t in ("a", "b", "c")]


async def test_non_streaming_tokens_come_from_usage(harness: Harness) -> None:
    assert (await harness.client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    labels = {"model": "gpt-4o-mini"}
    assert harness.metric("ragway_prompt_tokens_total", labels) == 3
    assert harness.metric("ragway_completion_tokens_total", labels) == 1
    assert harness.metric("ragway_time_to_first_token_seconds_count", labels) is None


async def test_stream_usage_is_requested_counted_and_hidden(harness: Harness) -> None:
    harness.chat.stream_events = EVENTS
    response = await harness.client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert harness.chat.received[0]["stream_options"] == {"include_usage": True}
    # The client did not ask for usage: its stream is exactly the worker's other events.
    assert response.content == b"".join(EVENTS) + b"data: [DONE]\n\n"
    labels = {"model": "gpt-4o-mini"}
    assert harness.metric("ragway_completion_tokens_total", labels) == 2
    # In-process, the whole stream arrives in one read: one chunk, so a TTFT and no gaps.
    # tests/integration/test_metrics_real.py checks the gaps on a real, incremental stream.
    assert harness.metric("ragway_time_to_first_token_seconds_count", labels) == 1


async def test_stream_usage_asked_for_by_the_client_is_kept(harness: Harness) -> None:
    harness.chat.stream_events = EVENTS
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = await harness.client.post("/v1/chat/completions", json=body)
    expected = b"".join(EVENTS) + usage_event("tiny-chat") + b"data: [DONE]\n\n"
    assert response.content == expected
    assert harness.metric("ragway_prompt_tokens_total", {"model": "gpt-4o-mini"}) == 3
