"""Cancelling a request's work when its client disconnects (server/api/edge.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from starlette.requests import Request
from starlette.types import Message

from server.api.edge import until_disconnect
from server.errors import ClientDisconnected


def _request(disconnect_after: float | None) -> Request:
    async def receive() -> Message:
        if disconnect_after is None:
            await asyncio.Event().wait()  # the client stays
        await asyncio.sleep(disconnect_after or 0)
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


async def _client_stays() -> Message:
    """An ASGI receive whose client never disconnects."""
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


def _collect(sent: list[Message]) -> Callable[[Message], Awaitable[None]]:
    async def send(message: Message) -> None:
        sent.append(message)

    return send


async def test_work_that_finishes_first_returns_and_leaves_no_cancellation() -> None:
    assert await until_disconnect(_request(None), asyncio.sleep(0.01, "done")) == "done"
    await asyncio.sleep(0.05)  # a stray cancel of this task would land here
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


async def test_a_disconnect_cancels_the_work() -> None:
    cancelled = asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    with pytest.raises(ClientDisconnected):
        await until_disconnect(_request(0.02), work())
    assert cancelled.is_set()
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0
    await asyncio.sleep(0.01)  # the task goes on normally afterwards


async def test_a_cancel_from_elsewhere_is_not_a_disconnect() -> None:
    async def request_task() -> None:
        await until_disconnect(_request(None), asyncio.sleep(10))

    task = asyncio.ensure_future(request_task())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_stream_whose_client_stops_reading_is_dropped_and_its_events_closed() -> None:
    from server.api.edge import EventStream

    closed = asyncio.Event()

    async def events() -> AsyncIterator[bytes]:
        try:
            for i in range(1000):
                yield b"data: %d\n\n" % i
        finally:
            closed.set()  # where the upstream request is closed

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) > 3:
            await asyncio.Event().wait()  # the client's socket is full: this send never ends

    stream = EventStream(events(), ping=0, send_timeout=0.2)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    await asyncio.wait_for(stream(scope, _client_stays, send), 5)
    assert closed.is_set()
    assert len(sent) == 4


async def test_a_stream_that_is_read_is_not_dropped() -> None:
    from server.api.edge import EventStream

    async def events() -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0.1)  # slower than the timeout in total, never stuck
            yield b"data: %d\n\n" % i

    sent: list[Message] = []
    send = _collect(sent)

    stream = EventStream(events(), ping=0, send_timeout=0.2)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    await asyncio.wait_for(stream(scope, _client_stays, send), 5)
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert len(sent) == 7


async def _endless(closed: asyncio.Event) -> AsyncIterator[bytes]:
    """A worker's stream that never ends by itself; `closed` is set when it is closed (where
    the upstream request is closed: the worker stops)."""
    try:
        for i in range(1_000_000):
            await asyncio.sleep(0.01)
            yield b"data: %d\n\n" % i
    finally:
        closed.set()


async def test_a_client_that_disconnects_mid_stream_ends_it_and_closes_its_events() -> None:
    from server.api.edge import EventStream

    closed = asyncio.Event()
    gone = asyncio.Event()

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) == 3:
            gone.set()

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    stream = EventStream(_endless(closed), ping=0, send_timeout=5)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    await asyncio.wait_for(stream(scope, receive, send), 10)  # returns: no error, no hang
    assert closed.is_set()
    assert not any(m.get("more_body") is False for m in sent)  # the stream was not "finished"
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_client_that_leaves_ends_a_stream_through_the_server_hook() -> None:
    """With the server's ON_DISCONNECT extension, no task reads `receive()`: the lost
    connection calls the hook, which ends the stream and closes its events."""
    from server.api.edge import ON_DISCONNECT, EventStream

    closed = asyncio.Event()
    hooks: list[Callable[[], None]] = []

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) == 3:
            for hook in hooks[:]:  # the connection is lost: what the protocol does
                hook()

    async def receive() -> Message:
        raise AssertionError("the hook replaces reading receive()")

    stream = EventStream(_endless(closed), ping=0, send_timeout=5)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": [],
             "extensions": {ON_DISCONNECT: hooks}}  # fmt: skip
    await asyncio.wait_for(stream(scope, receive, send), 10)
    assert closed.is_set()
    assert not any(m.get("more_body") is False for m in sent)
    assert hooks == []  # the stream took its entry out
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancel_from_outside_still_cancels_a_stream() -> None:
    from server.api.edge import EventStream

    async def events() -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(0.01)
            yield b"data: x\n\n"

    async def send(message: Message) -> None:
        pass

    stream = EventStream(events(), ping=1, send_timeout=5)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    task = asyncio.ensure_future(stream(scope, _client_stays, send))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_pings_go_out_while_the_worker_is_silent() -> None:
    from server.api.edge import EventStream

    async def events() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.35)
        yield b"data: late\n\n"

    sent: list[Message] = []
    send = _collect(sent)

    stream = EventStream(events(), ping=0.1, send_timeout=5)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    await asyncio.wait_for(stream(scope, _client_stays, send), 10)
    bodies = [m.get("body", b"") for m in sent if m["type"] == "http.response.body"]
    assert any(b.startswith(b": ping") for b in bodies)
    assert b"data: late\n\n" in bodies
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
