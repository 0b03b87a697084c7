"""Failover across two chat workers: retry before the first byte, never after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from server.app import create_app
from server.services.embeddings import TokenDecoder
from tests.api.conftest import settings_for_fakes
from tests.fakes.worker import FakeWorker, HostRouter, chunk_event
from tests.serving import served

CHAT = {"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}]}


@dataclass
class Pair:
    client: httpx.AsyncClient
    a: FakeWorker
    b: FakeWorker
    transport: HostRouter
    registry: CollectorRegistry

    def retries(self, error_type: str) -> float:
        value = self.registry.get_sample_value("ragway_retries_total", {"error_type": error_type})
        return value or 0.0


@pytest.fixture
async def pair(token_decoder: TokenDecoder) -> AsyncIterator[Pair]:
    a, b = FakeWorker(models=["tiny-chat"]), FakeWorker(models=["tiny-chat"])
    transport = HostRouter()
    transport.add("a.test", a)
    transport.add("b.test", b)
    settings = settings_for_fakes(
        workers=[
            {"url": "http://a.test", "kind": "chat", "name": "a"},
            {"url": "http://b.test", "kind": "chat", "name": "b"},
        ],
        routing={"chat_policy": "round_robin"},
        retries={"max_attempts": 3, "backoff": 0},
        health={"interval": 60, "timeout": 1.0, "eject_base": 30},
    )
    registry = CollectorRegistry()
    app = create_app(
        settings, upstream_transport=transport, registry=registry, token_decoder=token_decoder
    )
    async with served(app) as client:
        yield Pair(client, a, b, transport, registry)


@pytest.mark.parametrize("stream", [False, True])
async def test_unreachable_worker_fails_over_and_is_ejected(pair: Pair, stream: bool) -> None:
    pair.transport.failures["a.test"] = httpx.ConnectError("refused")
    for _ in range(4):
        response = await pair.client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
        assert response.status_code == 200
    # One failed attempt on a, then a is ejected and everything goes to b.
    assert pair.transport.generation_hosts.count("a.test") == 1
    assert pair.retries("upstream_unavailable") == 1
    ready = (await pair.client.get("/readyz")).json()
    a = next(w for w in ready["workers"] if w["id"] == "a")
    assert a["ejected"] is True
    assert "refused" in a["reason"]


async def test_worker_503_is_retried_but_400_is_not(pair: Pair) -> None:
    pair.a.status = 503
    assert (await pair.client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    pair.a.status = 200
    pair.b.status = 400
    pair.transport.generation_hosts.clear()
    response = await pair.client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 400  # the worker's own verdict on the request
    assert len(pair.transport.generation_hosts) == 1


async def test_a_lost_connection_is_retried_on_the_same_worker_first(pair: Pair) -> None:
    from server.upstream import h1

    lost = httpx.ConnectTimeout("x")  # a wrapper's name for it; the cause says what happened
    lost.__cause__ = h1.ConnectionLost("the worker closed the connection before answering")
    pair.transport.fail_next["a.test"] = [lost]
    response = await pair.client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert pair.transport.generation_hosts == ["a.test", "a.test"]
    assert pair.retries("upstream_connection_lost") == 1


async def test_every_worker_failing_returns_the_last_error(pair: Pair) -> None:
    pair.transport.failures["a.test"] = httpx.ConnectError("refused")
    pair.transport.failures["b.test"] = httpx.ConnectError("refused")
    response = await pair.client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"


async def test_no_retry_after_the_first_byte(pair: Pair) -> None:
    pair.a.stream_events = [chunk_event("tiny-chat", "partial")]
    pair.a.stream_tail = b""  # a dies after one event
    response = await pair.client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    events = [e for e in response.content.split(b"\n\n") if e]
    assert events[0] == chunk_event("tiny-chat", "partial").strip()
    assert "error" in orjson.loads(events[1].removeprefix(b"data: "))
    assert events[-1] == b"data: [DONE]"
    assert pair.transport.generation_hosts == ["a.test"]


async def test_timeouts_are_not_retried(pair: Pair) -> None:
    pair.transport.failures["a.test"] = httpx.ReadTimeout("slow")
    response = await pair.client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 504
    assert pair.transport.generation_hosts == ["a.test"]
