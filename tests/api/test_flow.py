"""Flow control in the gateway, against a fake worker that is busy for as long as a test says:
queueing, priority (in the queue and in the engine), rejections with their reason header, and
a client that leaves while queued."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from server.app import create_app
from server.errors import DROPPED_REASON_HEADER
from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness, settings_for_fakes
from tests.api.tenancy_support import auth, write_key_file
from tests.fakes.worker import FakeWorker, HostRouter
from tests.serving import served

KEYS: dict[str, dict[str, Any]] = {
    "interactive": {"priority": "high"},
    "team": {},
    "other-team": {},
    "bulk": {"priority": "batch"},
    "scheduler": {"priority": "high", "allow_fields": ["priority"]},
}
# One request at a time on the one chat worker: the second one queues.
ONE_AT_A_TIME = {"max_in_flight": 1, "max_waiting": 0, "max_kv_cache_usage": 0}


@asynccontextmanager
async def gateway(
    tmp_path: Path, decoder: TokenDecoder, **flow: Any
) -> AsyncIterator[tuple[Harness, asyncio.Semaphore]]:
    gate = asyncio.Semaphore(0)
    chat = FakeWorker(models=["tiny-chat"], gate=gate)
    embed = FakeWorker(models=["tiny-embed"], kind="embedding")
    transport = HostRouter()
    transport.add("chat.test", chat)
    transport.add("embed.test", embed)
    registry = CollectorRegistry()
    settings = settings_for_fakes(
        auth={"keys_file": str(write_key_file(tmp_path / "keys.yaml", KEYS))},
        rag={"data_dir": str(tmp_path / "data")},
        flow={**ONE_AT_A_TIME, **flow},
    )
    app = create_app(settings, upstream_transport=transport, registry=registry,
                     token_decoder=decoder)  # fmt: skip
    async with served(app) as client:
        yield Harness(client, chat, embed, transport, registry), gate


def _chat(h: Harness, key: str, tag: str, **extra: Any) -> asyncio.Task[httpx.Response]:
    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": tag}], **extra}
    return asyncio.ensure_future(
        h.client.post("/v1/chat/completions", json=body, headers=auth(key))
    )


async def _until(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting until {what}")


async def _queued(h: Harness) -> dict[str, Any]:
    flow: dict[str, dict[str, Any]] = (await h.client.get("/readyz")).json()["flow"]
    return flow.get("tiny-chat", {})


async def _depth_is(h: Harness, band: str, depth: int) -> None:
    for _ in range(500):
        if (await _queued(h)).get(band, 0) == depth:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the {band} queue never held {depth}")


def _tags(worker: FakeWorker) -> list[str]:
    return [body["messages"][0]["content"] for body in worker.received]


async def test_a_request_waits_while_the_worker_is_saturated(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    async with gateway(tmp_path, token_decoder) as (h, gate):
        first = _chat(h, "team", "first")
        await _until(lambda: len(h.chat.received) == 1, "the first reaches the worker")
        second = _chat(h, "team", "second")
        await _depth_is(h, "standard", 1)
        assert h.metric("ragway_flow_queue_depth", {"model": "tiny-chat", "band": "standard"}) == 1
        assert len(h.chat.received) == 1
        gate.release()
        assert (await first).status_code == 200
        await _until(lambda: len(h.chat.received) == 2, "the second is admitted")
        gate.release()
        assert (await second).status_code == 200
        assert await _queued(h) == {}
        labels = {"model": "tiny-chat", "band": "standard"}
        assert h.metric("ragway_flow_wait_seconds_count", labels) == 1
        assert h.metric("ragway_flow_admitted_total", {**labels, "tenant": "team"}) == 2


async def test_bands_go_in_priority_order_and_carry_vllm_priority(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    async with gateway(tmp_path, token_decoder) as (h, gate):
        running = _chat(h, "team", "running")
        await _until(lambda: len(h.chat.received) == 1, "the first reaches the worker")
        waiting = [_chat(h, "bulk", "batch")]
        await _depth_is(h, "batch", 1)
        waiting += [_chat(h, "team", "standard")]
        await _depth_is(h, "standard", 1)
        waiting += [_chat(h, "interactive", "high")]
        await _depth_is(h, "high", 1)
        for _ in range(4):
            gate.release()
        for task in [running, *waiting]:
            assert (await task).status_code == 200
        assert _tags(h.chat) == ["running", "high", "standard", "batch"]
        priorities = [body.get("priority") for body in h.chat.received]
        assert priorities == [None, -1, None, 1]  # vLLM: lower first; standard is its default


async def test_a_key_allowed_to_set_priority_keeps_its_own(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    async with gateway(tmp_path, token_decoder) as (h, gate):
        gate.release()
        reply = await _chat(h, "scheduler", "own", priority=5)
        assert reply.status_code == 200
        assert h.chat.received[-1]["priority"] == 5
        refused = await _chat(h, "team", "not allowed", priority=-10)
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "priority"


async def test_engine_priority_off_sends_no_priority(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    async with gateway(tmp_path, token_decoder, engine_priority=False) as (h, gate):
        gate.release()
        assert (await _chat(h, "interactive", "high")).status_code == 200
        assert "priority" not in h.chat.received[-1]


async def test_a_full_band_is_refused_with_429_and_its_reason(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    async with gateway(tmp_path, token_decoder, standard={"cap": 1}) as (h, gate):
        running = _chat(h, "team", "running")
        await _until(lambda: len(h.chat.received) == 1, "the first reaches the worker")
        queued = _chat(h, "team", "queued")
        await _depth_is(h, "standard", 1)
        refused = await _chat(h, "other-team", "refused")
        assert refused.status_code == 429
        assert refused.headers[DROPPED_REASON_HEADER] == "band_full"
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "request_dropped"
        labels = {"model": "tiny-chat", "band": "standard", "reason": "band_full"}
        assert h.metric("ragway_flow_rejected_total", labels) == 1
        gate.release()
        gate.release()
        assert (await running).status_code == 200
        assert (await queued).status_code == 200


async def test_a_request_queued_past_its_ttl_gets_429(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    async with gateway(tmp_path, token_decoder, batch={"ttl": 0.2}) as (h, gate):
        running = _chat(h, "team", "running")
        await _until(lambda: len(h.chat.received) == 1, "the first reaches the worker")
        late = await _chat(h, "bulk", "late")
        assert late.status_code == 429
        assert late.headers[DROPPED_REASON_HEADER] == "queue_timeout"
        assert "retry-after" in late.headers
        assert await _queued(h) == {}
        gate.release()
        assert (await running).status_code == 200
        assert _tags(h.chat) == ["running"]


async def test_no_healthy_worker_is_503_with_its_reason(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    async with gateway(tmp_path, token_decoder) as (h, _):
        h.chat.healthy = False
        await h.wait_for(lambda ready: ready["kinds"]["chat"] is False)
        reply = await _chat(h, "team", "nobody")
        assert reply.status_code == 503
        assert reply.headers[DROPPED_REASON_HEADER] == "no_healthy_worker"


async def test_a_client_that_leaves_while_queued_never_reaches_the_worker(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    async with gateway(tmp_path, token_decoder) as (h, gate):
        running = _chat(h, "team", "running")
        await _until(lambda: len(h.chat.received) == 1, "the first reaches the worker")
        leaving = _chat(h, "team", "leaving")
        await _depth_is(h, "standard", 1)
        leaving.cancel()  # the in-process transport runs the app in this task: it is cancelled
        with pytest.raises(asyncio.CancelledError):
            await leaving
        await _depth_is(h, "standard", 0)
        assert await _queued(h) == {}
        assert h.metric("ragway_flow_queue_depth", {"model": "tiny-chat", "band": "standard"}) == 0
        gate.release()
        assert (await running).status_code == 200
        after = _chat(h, "team", "after")
        await _until(lambda: len(h.chat.received) == 2, "the next one is admitted at once")
        gate.release()
        assert (await after).status_code == 200
        assert _tags(h.chat) == ["running", "after"]


async def test_flow_control_off_sends_everything_at_once(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    async with gateway(tmp_path, token_decoder, enabled=False) as (h, gate):
        tasks = [_chat(h, "team", f"r{i}") for i in range(3)]
        await _until(lambda: len(h.chat.received) == 3, "all three reach the worker")
        for _ in tasks:
            gate.release()
        for task in tasks:
            assert (await task).status_code == 200


async def test_streams_queue_too(tmp_path: Path, token_decoder: TokenDecoder) -> None:
    async with gateway(tmp_path, token_decoder) as (h, gate):
        running = _chat(h, "team", "running")
        await _until(lambda: len(h.chat.received) == 1, "the first reaches the worker")
        stream = _chat(h, "interactive", "stream", stream=True)
        await _depth_is(h, "high", 1)
        gate.release()
        gate.release()
        assert (await running).status_code == 200
        reply = await stream
        assert reply.status_code == 200
        assert reply.text.rstrip().endswith("data: [DONE]")
        assert orjson.loads(h.chat.raw_bodies[-1])["priority"] == -1


async def test_a_responses_request_carries_the_callers_engine_priority(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    """/v1/responses goes to vLLM with the band's `priority` too, as a chat does."""
    async with gateway(tmp_path, token_decoder) as (h, gate):
        gate.release()
        gate.release()
        for key in ("interactive", "team"):
            reply = await h.client.post(
                "/v1/responses",
                json={"model": "tiny-chat", "input": "hello", "store": False},
                headers=auth(key),
            )
            assert reply.status_code == 200, reply.text
        high, standard = h.chat.received[-2:]
        assert high["priority"] == -1
        assert "priority" not in standard  # the engine's default, 0: nothing to add
