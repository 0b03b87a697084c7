"""The production upstream path (server/upstream/transport.py's aiohttp transport behind
UpstreamClient) over real sockets, against a small aiohttp worker in this event loop: what
the in-process tests, which inject an httpx transport, never exercise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from ragway.stack import free_port
from server.errors import UpstreamStatus, UpstreamTimeout, UpstreamUnavailable
from server.settings import RagwaySettings
from server.upstream.client import UpstreamClient


@dataclass
class Worker:
    url: str
    seen_headers: list[Mapping[str, str]] = field(default_factory=list)  # case-insensitive
    peers: list[object] = field(default_factory=list)
    stream_stopped: asyncio.Event = field(default_factory=asyncio.Event)


def _app(worker: Worker) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        worker.seen_headers.append(request.headers.copy())
        worker.peers.append(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        body = await request.read()
        return web.Response(body=b"echo:" + body, content_type="application/json")

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, body=b'{"error": "nope"}', content_type="application/json")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(body=b"late")

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            for n in range(100_000):
                await response.write(b"data: %d\n\n" % n)
                await asyncio.sleep(0.005)
        except (ConnectionError, asyncio.CancelledError):
            worker.stream_stopped.set()
            raise
        return response

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="vllm:num_requests_waiting 3\n")

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/missing", missing)
    app.router.add_post("/slow", slow)
    app.router.add_get("/slow", slow)
    app.router.add_post("/events", events)
    app.router.add_get("/metrics", metrics)
    return app


@asynccontextmanager
async def running_worker() -> AsyncIterator[Worker]:
    port = free_port()
    worker = Worker(f"http://127.0.0.1:{port}")
    runner = web.AppRunner(_app(worker), handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield worker
    finally:
        await runner.cleanup()


@asynccontextmanager
async def client(**timeouts: float) -> AsyncIterator[UpstreamClient]:
    upstream = UpstreamClient(RagwaySettings(timeouts=timeouts))
    try:
        yield upstream
    finally:
        await upstream.aclose()


async def test_post_relays_the_answer_and_reuses_the_connection() -> None:
    async with running_worker() as worker, client() as upstream:
        first = await upstream.post(worker.url + "/echo", b'{"a": 1}', {"x-request-id": "r1"})
        second = await upstream.post(worker.url + "/echo", b"two", {})
    assert (first.status, first.content, first.content_type) == (
        200,
        b'echo:{"a": 1}',
        "application/json",
    )
    assert second.content == b"echo:two"
    sent = worker.seen_headers[0]
    assert sent["x-request-id"] == "r1"
    assert sent["Accept-Encoding"] == "identity"
    assert sent["User-Agent"] == "ragway"
    assert worker.peers[0] == worker.peers[1]  # one kept-alive connection


async def test_an_error_status_is_returned_by_post_and_raised_by_stream() -> None:
    async with running_worker() as worker, client() as upstream:
        reply = await upstream.post(worker.url + "/missing", b"{}", {})
        assert (reply.status, reply.content) == (404, b'{"error": "nope"}')
        with pytest.raises(UpstreamStatus) as raised:
            async with upstream.stream(worker.url + "/missing", b"{}", {}):
                pass
    assert raised.value.upstream_status == 404
    assert raised.value.content == b'{"error": "nope"}'


async def test_leaving_a_stream_early_closes_the_connection() -> None:
    async with running_worker() as worker, client() as upstream:
        received = b""
        async with upstream.stream(worker.url + "/events", b"{}", {}) as chunks:
            async for chunk in chunks:
                received += chunk
                if received.count(b"\n\n") >= 3:
                    break
        assert received.startswith(b"data: 0\n\n")
        # The worker learns of it (its write fails or its handler is cancelled): it stops.
        await asyncio.wait_for(worker.stream_stopped.wait(), timeout=30)


async def test_an_unreachable_worker_is_unavailable() -> None:
    async with client() as upstream:
        with pytest.raises(UpstreamUnavailable, match="worker unreachable"):
            await upstream.post(f"http://127.0.0.1:{free_port()}/echo", b"{}", {})


async def test_a_silent_worker_times_out_on_read() -> None:
    async with running_worker() as worker, client(read=0.3) as upstream:
        with pytest.raises(UpstreamTimeout):
            await upstream.post(worker.url + "/slow", b"{}", {})


async def test_probes_have_their_own_time_limit() -> None:
    async with running_worker() as worker, client() as upstream:
        assert "num_requests_waiting 3" in await upstream.get_text(
            worker.url + "/metrics", time_limit=10
        )
        with pytest.raises(UpstreamTimeout):
            await upstream.get_json(worker.url + "/slow", time_limit=0.3)
