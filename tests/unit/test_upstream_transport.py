"""The production upstream path (server/upstream/h1.py's pool behind UpstreamClient) over real
sockets: against a small aiohttp worker in this event loop, and against raw sockets that answer
with exactly the bytes a case needs (chunked bodies, a worker that closes a kept-alive
connection, a broken answer). What the in-process tests, which inject an httpx transport, never
exercise."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import uvloop
from aiohttp import web

from ragway.stack import free_port
from server.errors import (
    UpstreamBadResponse,
    UpstreamConnectionLost,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from server.settings import RagwaySettings
from server.upstream.client import UpstreamClient
from server.upstream.h1 import H1Pool


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


# Raw workers: each request gets `answer(request_head)` written back on its kept-alive
# connection; None closes the connection unanswered, and an answer that starts with CLOSE_AFTER
# is written (without it) and the connection closed.
CLOSE_AFTER = b"<close after>"

Answerer = Callable[[bytes], Awaitable[bytes | None]]


@asynccontextmanager
async def raw_worker(answer: Answerer) -> AsyncIterator[tuple[str, list[int]]]:
    """A worker on a raw socket; yields its URL and the number of requests per connection."""
    per_connection: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        per_connection.append(0)
        index = len(per_connection) - 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"content-length: (\d+)", head.lower())
                if length:
                    await reader.readexactly(int(length.group(1)))
                per_connection[index] += 1
                reply = await answer(head)
                if reply is None:
                    break
                writer.write(reply.removeprefix(CLOSE_AFTER))
                await writer.drain()
                if reply.startswith(CLOSE_AFTER):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", per_connection
    finally:
        server.close()


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


async def test_a_chunked_answer_is_read_whole_and_streamed() -> None:
    async def answer(head: bytes) -> bytes:
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"data: 1\n\n", b"data: 2\n\n"))
        return (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n"
        )

    async with raw_worker(answer) as (url, per_connection), client() as upstream:
        reply = await upstream.post(url + "/x", b"{}", {})
        async with upstream.stream(url + "/x", b"{}", {}) as chunks:
            streamed = b"".join([chunk async for chunk in chunks])
    assert (reply.status, reply.content_type) == (200, "text/event-stream")
    assert reply.content == streamed == b"data: 1\n\ndata: 2\n\n"
    assert per_connection == [2]  # both on one kept-alive connection


async def test_a_kept_alive_connection_the_worker_closed_is_retried_on_a_new_one() -> None:
    async def answer(head: bytes) -> bytes | None:
        answer.calls += 1  # type: ignore[attr-defined]
        # The second request arrives on the first connection: close it unanswered, as a
        # worker whose keep-alive timer ran out at that moment does.
        return None if answer.calls == 2 else _ok(b"{}")  # type: ignore[attr-defined]

    answer.calls = 0  # type: ignore[attr-defined]
    async with raw_worker(answer) as (url, per_connection), client() as upstream:
        first = await upstream.post(url + "/x", b"{}", {})
        second = await upstream.post(url + "/x", b"{}", {})
    assert first.status == second.status == 200
    assert per_connection == [2, 1]


async def test_a_worker_that_closes_mid_answer_is_a_lost_connection() -> None:
    async def partial(head: bytes) -> bytes | None:
        return CLOSE_AFTER + b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part"

    async def unanswered(head: bytes) -> bytes | None:
        return None

    async with raw_worker(partial) as (url, _), client() as upstream:
        with pytest.raises(UpstreamConnectionLost, match="mid-answer"):
            await upstream.post(url + "/x", b"{}", {})
    async with raw_worker(unanswered) as (url, _), client() as upstream:
        with pytest.raises(UpstreamConnectionLost, match="before answering"):
            await upstream.post(url + "/x", b"{}", {})


async def test_a_broken_answer_is_a_bad_response() -> None:
    async def answer(head: bytes) -> bytes:
        return b"NOT HTTP AT ALL\r\n\r\n"

    async with raw_worker(answer) as (url, _), client() as upstream:
        with pytest.raises(UpstreamBadResponse, match="broken response"):
            await upstream.post(url + "/x", b"{}", {})


async def test_a_request_waits_for_a_free_connection_then_gives_up() -> None:
    async def answer(head: bytes) -> bytes:
        if b"/hold" in head:
            return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n"
        return _ok(b"{}")

    settings = RagwaySettings(timeouts={"pool": 0.3}, upstream={"max_connections": 1})
    upstream = UpstreamClient(settings)
    try:
        async with raw_worker(answer) as (url, _):
            async with upstream.stream(url + "/hold", b"{}", {}) as chunks:
                assert await anext(aiter(chunks)) == b"first"
                with pytest.raises(UpstreamUnavailable, match="no connection"):
                    await upstream.post(url + "/x", b"{}", {})
            # The held stream is closed: its slot is free again.
            assert (await upstream.post(url + "/x", b"{}", {})).status == 200
    finally:
        await upstream.aclose()


async def test_a_reader_that_falls_behind_pauses_the_socket() -> None:
    piece = b"x" * 65536

    async def answer(head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (64 * len(piece)) + piece * 64

    pool = H1Pool(
        limit=4,
        connect_timeout=5,
        pool_timeout=5,
        read_timeout=0.3,
        keepalive=4,
        default_headers={},
    )
    async with raw_worker(answer) as (url, _):
        conn = await pool.send("POST", url + "/x", b"{}", {})
        chunks = aiter(conn.chunks())
        received = len(await anext(chunks))
        deadline = asyncio.get_running_loop().time() + 30
        while not conn._paused:  # the worker keeps sending while nobody reads
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        # Paused with a bounded buffer, and longer than the read timeout without a gap error.
        await asyncio.sleep(0.6)
        assert conn._buffered <= 2 * 256 * 1024
        received += sum([len(chunk) async for chunk in chunks])
        await conn.aclose()
    await pool.aclose()
    assert received == 64 * len(piece)


async def test_a_large_answer_read_whole_is_not_paused() -> None:
    """Back-pressure is for streams: an answer read whole (a large embeddings reply) is read
    to its end, however far past the pause threshold it goes."""
    body = b"x" * (3 * 1024 * 1024)

    async def answer(head: bytes) -> bytes:
        return _ok(body)

    async with raw_worker(answer) as (url, _), client(read=5) as upstream:
        reply = await asyncio.wait_for(upstream.post(url + "/x", b"{}", {}), 60)
    assert reply.content == body


async def test_a_header_with_a_line_break_is_never_sent() -> None:
    async def answer(head: bytes) -> bytes:
        raise AssertionError("nothing may reach the worker")

    async with raw_worker(answer) as (url, per_connection), client() as upstream:
        with pytest.raises(UpstreamBadResponse, match="not sendable"):
            await upstream.post(url + "/x", b"{}", {"x-evil": "a\r\nx-injected: 1"})
    assert per_connection == []


@pytest.mark.parametrize(
    "case",
    [
        test_post_relays_the_answer_and_reuses_the_connection,
        test_leaving_a_stream_early_closes_the_connection,
        test_an_unreachable_worker_is_unavailable,
        test_a_chunked_answer_is_read_whole_and_streamed,
        test_a_kept_alive_connection_the_worker_closed_is_retried_on_a_new_one,
        test_a_worker_that_closes_mid_answer_is_a_lost_connection,
        test_a_request_waits_for_a_free_connection_then_gives_up,
        test_a_reader_that_falls_behind_pauses_the_socket,
        test_a_large_answer_read_whole_is_not_paused,
    ],
    ids=lambda case: case.__name__.removeprefix("test_"),
)
def test_on_uvloop(case: Callable[[], Awaitable[None]]) -> None:
    """The gateway runs on uvloop (whose transports differ from asyncio's in details such as
    when a protocol's connection_made runs): the cases above again, on it."""

    async def run() -> None:
        await case()

    uvloop.run(run())


async def test_idle_connections_of_a_gone_worker_are_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that left (discovery removed it) is never asked again: its idle connections
    are closed and its origin forgotten by the periodic sweep, not kept for ever."""
    import server.upstream.h1 as h1

    monkeypatch.setattr(h1, "_SWEEP_EVERY", 1)

    async def answer(head: bytes) -> bytes:
        return _ok(b"{}")

    pool = H1Pool(limit=4, connect_timeout=5, pool_timeout=5, read_timeout=5, keepalive=0.05,
                  default_headers={})  # fmt: skip
    async with raw_worker(answer) as (gone, _), raw_worker(answer) as (staying, _):
        conn = await pool.send("POST", gone + "/x", b"{}", {})
        await conn.read()
        await conn.aclose()  # idle now, under the gone worker's origin
        assert len(pool._idle) == 1
        await asyncio.sleep(0.1)  # past the keep-alive
        conn = await pool.send("POST", staying + "/x", b"{}", {})
        await conn.read()
        await conn.aclose()  # this release sweeps
        assert list(pool._idle) == [conn.origin]
    await pool.aclose()
