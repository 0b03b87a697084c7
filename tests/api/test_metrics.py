"""Metrics from traffic: tokens from usage, TTFT and inter-token gaps, and the usage chunk
ragway asks for itself kept out of the client's stream."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from server.app import create_app
from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness, settings_for_fakes
from tests.fakes.worker import FakeWorker, HostRouter, chunk_event, usage_event
from tests.serving import served

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


async def test_in_flight_is_counted_when_prometheus_collects(token_decoder: TokenDecoder) -> None:
    """`ragway_worker_in_flight` is read at collection, not copied by the load scraper: with
    the scraper's next round an hour away, a request held by the worker shows at once, and so
    does its end."""
    gate = asyncio.Semaphore(0)
    chat = FakeWorker(models=["tiny-chat"], gate=gate)
    transport = HostRouter()
    transport.add("chat.test", chat)
    transport.add("embed.test", FakeWorker(models=["tiny-embed"], kind="embedding"))
    registry = CollectorRegistry()
    settings = settings_for_fakes(health={"interval": 0.05, "metrics_interval": 3600})
    app = create_app(settings, upstream_transport=transport, registry=registry,
                     token_decoder=token_decoder)  # fmt: skip
    in_flight = {"worker": "chat-0"}
    async with served(app) as client:
        for _ in range(500):  # the scraper's first round, at start, creates the series
            if registry.get_sample_value("ragway_worker_in_flight", in_flight) is not None:
                break
            await asyncio.sleep(0.01)
        assert registry.get_sample_value("ragway_worker_in_flight", in_flight) == 0
        held = asyncio.ensure_future(client.post("/v1/chat/completions", json=CHAT))
        for _ in range(500):
            if chat.received:
                break
            await asyncio.sleep(0.01)
        assert chat.received, "the request never reached the worker"
        assert registry.get_sample_value("ragway_worker_in_flight", in_flight) == 1
        gate.release()
        assert (await held).status_code == 200
        assert registry.get_sample_value("ragway_worker_in_flight", in_flight) == 0
