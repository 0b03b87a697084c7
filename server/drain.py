"""Graceful drain: what the gateway does between SIGTERM and its exit.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections at once, so readiness fails and new
clients are refused; `DrainGate` answers 503 to any request that still arrives on a kept-alive
connection. Requests and streams already running carry on for `shutdown.grace` seconds. A
stream still running when the grace ends is closed upstream and ends in-band with an error
event and `[DONE]`, so its client learns why, rather than seeing a cut connection.

sse-starlette would instead cancel every stream the moment uvicorn begins to exit (its
`AppStatus` shutdown watcher); `server.api.edge.EventStream` opts out of that, and this module
takes its place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import ShuttingDown
from server.upstream.sse import data_event, done_event

log = logging.getLogger("ragway.drain")

# Answered as usual while draining: liveness (the process is fine) and metrics scrapes.
_ALWAYS_ANSWERED = frozenset({"/healthz", "/metrics"})


class _Watch:
    """One running stream: the task that relays it, and whether it is waiting on the worker."""

    __slots__ = ("cut", "task", "waiting")

    def __init__(self, task: asyncio.Task[object] | None):
        self.task = task
        self.waiting = False
        self.cut = False


class Drain:
    def __init__(self, grace: float):
        self.grace = grace
        self.draining = False
        self.expired = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams: set[_Watch] = set()
        self._timer: asyncio.TimerHandle | None = None

    def bind(self) -> None:
        """Remember the running loop (the lifespan calls this), so `begin` may be called from a
        signal handler."""
        self._loop = asyncio.get_running_loop()

    def begin(self) -> None:
        """Start draining. Safe to call from a signal handler, and more than once."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        if self.draining:
            return
        self.draining = True
        log.info(
            "draining: %d stream(s) running get up to %.1f s to finish", len(self._streams),
            self.grace,
        )  # fmt: skip
        assert self._loop is not None
        self._timer = self._loop.call_later(self.grace, self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self._streams:
            log.warning("drain grace over: ending %d stream(s) in-band", len(self._streams))
        for watch in self._streams:
            watch.cut = True
            # Only a stream waiting on its worker is interrupted; any other ends at its next
            # event, so a cancellation never lands in the middle of a send to the client.
            if watch.waiting and watch.task is not None:
                watch.task.cancel()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    async def guard(self, events: AsyncIterator[bytes], line: bytes) -> AsyncIterator[bytes]:
        """Relay `events`; if the drain's grace ends first, close them (and the upstream request
        with them) and end with an in-band error event and `[DONE]`, framed with `line`."""
        watch = _Watch(asyncio.current_task())
        self._streams.add(watch)
        try:
            while not watch.cut:
                watch.waiting = True
                try:
                    chunk = await anext(events)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if not watch.cut or watch.task is None:
                        raise
                    watch.task.uncancel()
                    break
                finally:
                    watch.waiting = False
                yield chunk
            await _close(events)
            failure = ShuttingDown("The gateway is shutting down; the stream was cut short.")
            yield data_event(failure.body(), line) + done_event(line)
        finally:
            self._streams.discard(watch)
            await _close(events)


async def _close(events: AsyncIterator[bytes]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


class DrainGate:
    """Pure-ASGI: while draining, a new request gets 503 and `connection: close`."""

    def __init__(self, app: ASGIApp, drain: Drain):
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.drain.draining or scope["type"] != "http" or scope["path"] in _ALWAYS_ANSWERED:
            await self.app(scope, receive, send)
            return
        failure = ShuttingDown("The gateway is shutting down; retry on another replica.")
        response = Response(
            orjson.dumps(failure.body()),
            failure.status,
            headers={"connection": "close"},
            media_type="application/json",
        )
        await response(scope, receive, send)
