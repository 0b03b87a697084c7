"""The HTTP server's limits (server/http_server.py), over real sockets: uvicorn with the
guarded protocol, in this event loop, in front of a tiny echo app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ragway.stack import free_port
from server.api.edge import disconnect_hooks, until_disconnect
from server.errors import ClientDisconnected
from server.http_server import server_config
from server.settings import RagwaySettings

LIMITS: dict[str, float] = {
    "header_timeout": 0.5,
    "body_timeout": 1.0,
    "max_header_bytes": 4096,
    "max_connections": 50,
}


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"got %d" % len(body)})


@asynccontextmanager
async def serving(limits: dict[str, float], app: ASGIApp = echo) -> AsyncIterator[int]:
    settings = RagwaySettings(port=free_port(), log_level="warning", limits=limits)
    server = uvicorn.Server(server_config(app, settings))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield settings.port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with serving(LIMITS) as serving_port:
        yield serving_port


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _answer(reader: asyncio.StreamReader, within: float = 60.0) -> bytes:
    """Everything the server sends until it closes the connection (`within`: only against a
    hang; the deadlines under test are about a second)."""
    return await asyncio.wait_for(reader.read(), within)


POST = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n"


async def test_unfinished_heads_get_408_and_are_closed(port: int) -> None:
    conns = []
    for _ in range(200):
        reader, writer = await _open(port)
        # Written at once: on a loaded machine, opening all 200 first can outlast the header
        # deadline of the first ones, which are then closed before their bytes arrive (a reset).
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n")
        conns.append((reader, writer))
    # Bounded only against a hang: the deadline is 0.5 s, but a loaded 2-core machine may take
    # seconds to serve 200 connections.
    answers = await asyncio.wait_for(
        asyncio.gather(*(_answer(reader) for reader, _ in conns)), timeout=120
    )
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
    for _, writer in conns:
        writer.close()


async def test_a_silent_connection_is_closed(port: int) -> None:
    reader, writer = await _open(port)
    assert (await _answer(reader)).startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_a_trickled_head_does_not_extend_the_deadline(port: int) -> None:
    reader, writer = await _open(port)
    writer.write(b"GET / HTTP/1.1\r\n")
    read = asyncio.ensure_future(_answer(reader))
    for _ in range(20):  # 2 s of header lines, each well within the 0.5 s deadline
        if read.done():
            break
        writer.write(b"x-a: b\r\n")
        await asyncio.sleep(0.1)
    assert (await read).startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_an_oversized_head_gets_431(port: int) -> None:
    reader, writer = await _open(port)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 8000 + b"\r\n")
    assert (await _answer(reader)).startswith(b"HTTP/1.1 431 ")
    writer.close()


async def test_a_stalled_body_gets_408(port: int) -> None:
    reader, writer = await _open(port)
    writer.write(POST % 100 + b"x" * 10)
    assert (await _answer(reader)).startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_a_slow_but_moving_body_and_a_large_one_are_served(port: int) -> None:
    reader, writer = await _open(port)
    writer.write(POST % 40)
    for _ in range(4):
        await asyncio.sleep(0.3)  # each pause well below body_timeout, all of them above it
        writer.write(b"x" * 10)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 ")
    # Head and a 1 MB body in one write: only the head counts against max_header_bytes.
    writer.write(POST % 1_000_000 + b"y" * 1_000_000)
    await asyncio.wait_for(reader.readuntil(b"got 40"), 5)
    await asyncio.wait_for(reader.readuntil(b"got 1000000"), 5)
    writer.close()


async def test_a_kept_alive_connection_times_out_a_half_sent_next_request(port: int) -> None:
    reader, writer = await _open(port)
    writer.write(POST % 0 + b"GET / HTTP/1.1\r\n")
    answer = await _answer(reader)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 408 " in answer
    writer.close()


async def test_requests_over_the_concurrency_cap_get_503() -> None:
    # Long head deadlines, the pressure one too (50 open connections of 50 are pressure): the
    # idle connections must stay open however slow the machine.
    async with serving({**LIMITS, "header_timeout": 60, "pressure_timeout": 60}) as port:
        idle = [await _open(port) for _ in range(int(LIMITS["max_connections"]))]
        reader, writer = await _open(port)
        writer.write(POST % 0)
        status = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
        assert status.startswith(b"HTTP/1.1 503")
        for _, w in [*idle, (reader, writer)]:
            w.close()


async def test_a_client_that_leaves_cancels_the_work_through_the_disconnect_hook() -> None:
    """The protocol offers the ON_DISCONNECT extension, and losing the connection cancels the
    work awaited with until_disconnect (no watcher task), which then leaves no hook behind."""
    hooks: list[list[object]] = []
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive, send)
        await request.body()
        found = disconnect_hooks(scope)
        assert found is not None
        hooks.append(found)  # type: ignore[arg-type]
        try:
            await until_disconnect(request, asyncio.sleep(600))
        except ClientDisconnected:
            outcome.set_result("cancelled")

    async with serving(LIMITS, app) as serving_port:
        _, writer = await _open(serving_port)
        writer.write(POST % 2 + b"{}")
        await writer.drain()
        for _ in range(3000):  # until the work is under way (generous: a loaded machine)
            if hooks and hooks[0]:
                break
            await asyncio.sleep(0.01)
        assert hooks
        assert len(hooks[0]) == 1
        writer.close()
        assert await asyncio.wait_for(outcome, 30) == "cancelled"
        assert hooks[0] == []
