"""Request-edge helpers shared by the routers: bounded body reads, JSON responses, and
cancelling work when the client disconnects."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio
import orjson
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from server.errors import ClientDisconnected, PayloadTooLarge
from server.services.generation import Relayed
from server.state import GatewayState
from server.upstream.client import Reply

T = TypeVar("T")
log = logging.getLogger("ragway.edge")

# A server extension (scope["extensions"]): the list of callables the connection calls when it
# is lost. server/http_server.py's protocol offers it; with it, watching for a client that
# leaves costs a list entry instead of a task per request. Without it (another server, the
# in-process tests) a task reads `receive()` for `http.disconnect`, as the ASGI spec says.
ON_DISCONNECT = "ragway.on_disconnect"


def disconnect_hooks(scope: Scope) -> list[Callable[[], None]] | None:
    extensions = scope.get("extensions")
    return None if extensions is None else extensions.get(ON_DISCONNECT)


class EventStream(EventSourceResponse):
    """sse-starlette's response, with its send timeout kept off the per-event path.

    sse-starlette bounds each send with an anyio cancel scope: task lookups and sniffio on every
    chunk (anyio, sniffio and `current_task` took about 12% of the first streaming profile's
    samples). Here a send only stamps the time it began; one timer per stream looks every
    `send_timeout` for a send that has been blocked that long (a client that stopped reading:
    the socket is full) and cancels it. The stream then ends with sse-starlette's
    SendTimeoutError, which closes the event iterator, and so the upstream request: the worker
    stops generating and the connection is released.

    The stream also runs without sse-starlette's anyio task group: the events go out from the
    response's own task, and only the disconnect listener and the ping loop get a task each
    (plain asyncio tasks). sse-starlette spawns four anyio tasks per stream (its shutdown
    listener included, which ragway replaces with server/drain.py); in the profile of a gateway
    with auth on, anyio's own code took about a tenth of the CPU of 16 concurrent streams."""

    _loop: asyncio.AbstractEventLoop | None = None
    _sender: asyncio.Task[Any] | None = None  # the send in flight, if any
    _since = 0.0  # when it began
    _stalled = False
    _watchdog: asyncio.TimerHandle | None = None
    _scope: Scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lean = scope["type"] == "http" and scope["method"] != "HEAD"
        try:
            if lean and self.data_sender_callable is None:
                self._scope = scope
                await self._run(receive, send)
            else:
                await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.info("dropped a stream whose client read nothing for %s s", self.send_timeout)
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()

    async def _run(self, receive: Receive, send: Send) -> None:
        """sse-starlette's task group, in this task: the events go out from here; a client
        that disconnects cancels them; a ping loop that fails ends them too."""
        streaming = asyncio.current_task()
        assert streaming is not None
        ended_by: str | None = None  # "client", "ping" or "stream": whichever ends first

        def end(name: str) -> None:
            nonlocal ended_by
            if ended_by is None:
                ended_by = name
                self.active = False
                streaming.cancel()

        async def watch(name: str, work: Awaitable[None]) -> None:
            try:
                await work
            finally:
                end(name)

        hooks = disconnect_hooks(self._scope)
        client_left = functools.partial(end, "client")
        if hooks is not None:
            hooks.append(client_left)
            helpers = []
        else:
            helpers = [asyncio.ensure_future(watch("client", self._listen_for_disconnect(receive)))]
        if self._ping_interval > 0:
            helpers.append(asyncio.ensure_future(watch("ping", self._ping(send))))
        try:
            await self._stream_response(send)
        except asyncio.CancelledError:
            if ended_by is None or streaming.cancelling() > 1:
                raise  # cancelled from outside, not by a helper
            streaming.uncancel()
        finally:
            ended_by = ended_by or "stream"
            if hooks is not None:
                hooks.remove(client_left)
            for helper in helpers:
                helper.cancel()
            done = await asyncio.gather(*helpers, return_exceptions=True)
        failure = next((e for e in done if isinstance(e, SendTimeoutError)), None)
        if failure is not None:
            raise failure
        if self.background is not None:
            await self.background()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
            return
        if self._sender is not None:
            # A ping while an event is being sent (rare): sse-starlette's own bound.
            await super()._send_with_timeout(send, message)
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(self.send_timeout, self._check)
        task = self._sender = asyncio.current_task()
        self._since = loop.time()
        try:
            await send(message)
        except asyncio.CancelledError:
            if self._stalled and task is not None:
                task.uncancel()
                raise SendTimeoutError() from None
            raise
        finally:
            self._sender = None

    def _check(self) -> None:
        assert self._loop is not None
        assert self.send_timeout is not None
        sender = self._sender
        if sender is not None and self._loop.time() - self._since >= self.send_timeout:
            self._stalled = True
            sender.cancel()
            return
        self._watchdog = self._loop.call_later(self.send_timeout / 2, self._check)

    async def _listen_for_exit_signal_with_grace(self) -> None:
        """Never ends the stream: sse-starlette would cancel every stream the moment the server
        begins to exit. server/drain.py gives them their grace and ends them in-band instead."""
        await anyio.sleep_forever()


class PlainEndpoint:
    """A route endpoint `handler(request) -> Response` without Starlette's per-route exception
    wrapper (`request_response`), which builds two closures per request and wraps `send` once
    more, a call on every streamed chunk. An exception still reaches the same handlers
    (server/api/errors.py) through the app's ExceptionMiddleware, which answers the same way.
    A class, not a function: Starlette wraps functions."""

    __slots__ = ("handler",)

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]):
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive, send))
        await response(scope, receive, send)


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:
        # Also what the server's body-read timeout looks like from here (see server.http).
        raise ClientDisconnected("The client closed the connection.") from None
    return b"".join(chunks)


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work` in this task, cancelling it if the client disconnects first (the body must
    already be read). Cancelling closes the upstream request, so the worker stops too. `work`
    is not wrapped in a task; the watch is the server's disconnect hook (ON_DISCONNECT), or
    else one task that reads `receive()`."""
    current = asyncio.current_task()
    assert current is not None
    gone = False

    def leave() -> None:
        nonlocal gone
        if not gone:
            gone = True
            current.cancel()

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        leave()

    hooks = disconnect_hooks(request.scope)
    watcher = None
    if hooks is not None:
        hooks.append(leave)
    else:
        watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise
        current.uncancel()
        raise ClientDisconnected("The client closed the connection.") from None
    finally:
        if hooks is not None:
            hooks.remove(leave)
        if watcher is not None:
            watcher.cancel()


def relayed_stream(
    gateway: GatewayState, relayed: Relayed, headers: Mapping[str, str]
) -> EventStream:
    """A worker's stream as the client gets it: framed with the worker's own line ending, kept
    alive by pings, guarded by the drain (SIGTERM) and by the send timeout."""
    return EventStream(
        gateway.drain.guard(relayed.events, relayed.line),
        ping=gateway.settings.stream.ping_interval,
        sep=relayed.line.decode(),
        headers=headers,
        send_timeout=gateway.settings.limits.stream_send_timeout,
    )


def relayed_reply(gateway: GatewayState, reply: Reply, headers: Mapping[str, str]) -> Response:
    """A worker's whole answer, relayed unchanged (its own 5xx counted as upstream errors)."""
    gateway.count_upstream_status(reply.status)
    return Response(reply.content, reply.status, media_type=reply.content_type, headers=headers)
