"""The drain in-process: a stream outliving the grace ends in-band, one that finishes in time
is untouched, and a new request while draining gets 503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.drain import Drain, DrainGate


async def _events(count: int, gap: float, closed: list[bool]) -> AsyncIterator[bytes]:
    try:
        for i in range(count):
            await asyncio.sleep(gap)
            yield b"data: %d\r\n\r\n" % i
    finally:
        closed.append(True)


async def _drained(drain: Drain, count: int, gap: float) -> tuple[list[bytes], list[bool]]:
    closed: list[bool] = []
    got = []
    async for chunk in drain.guard(_events(count, gap, closed), b"\r\n"):
        got.append(chunk)
        if len(got) == 1:
            drain.begin()
    return got, closed


async def test_a_stream_outliving_the_grace_ends_with_an_error_then_done() -> None:
    drain = Drain(grace=0.1)
    drain.bind()
    got, closed = await asyncio.wait_for(_drained(drain, 1000, 0.01), 5)
    assert closed == [True]  # the upstream side was closed
    assert 1 < len(got) < 1000
    error, done, tail = got[-1].split(b"\r\n\r\n")
    assert orjson.loads(error.removeprefix(b"data: "))["error"]["code"] == "server_shutting_down"
    assert (done, tail) == (b"data: [DONE]", b"")


async def test_a_stream_within_the_grace_is_untouched() -> None:
    drain = Drain(grace=5)
    drain.bind()
    got, _ = await _drained(drain, 5, 0.01)
    assert got == [b"data: %d\r\n\r\n" % i for i in range(5)]
    drain.close()


async def test_new_requests_while_draining_get_503_but_liveness_answers() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await Response("ok")(scope, receive, send)

    drain = Drain(grace=1)
    drain.bind()
    transport = httpx.ASGITransport(app=DrainGate(app, drain))
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        assert (await client.get("/v1/models")).status_code == 200
        drain.begin()
        await asyncio.sleep(0)
        refused = await client.post("/v1/chat/completions")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "server_shutting_down"
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
    drain.close()
