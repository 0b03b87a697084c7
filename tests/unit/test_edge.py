"""Cancelling a request's work when its client disconnects (server/api/edge.py)."""

from __future__ import annotations

import asyncio

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
