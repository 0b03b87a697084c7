"""One HTTP/1.1 connection to a worker (server/upstream/h1.py keeps them in a pool): an
asyncio protocol that writes a request and reads its answer through httptools' parser
callbacks, and the transport errors server/upstream/errors.py translates."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

import httptools

if TYPE_CHECKING:
    from server.upstream.h1 import H1Pool

# Pause reading a streamed answer with this much buffered and unread.
_HIGH_WATER = 256 * 1024
# A body up to this size goes out in one write with its head (a copy, cheaper than a second
# send and a second segment for the worker to read).
_ONE_WRITE = 64 * 1024


class H1Error(Exception):
    """Base of this module's transport errors (server/upstream/errors.py translates them)."""


class ConnectFailed(H1Error):
    pass


class PoolTimeout(H1Error):
    pass


class ReadTimeout(H1Error):
    pass


class ConnectionLost(H1Error):
    pass


class BadResponse(H1Error):
    pass


class InvalidRequest(H1Error):
    """A request that cannot go on the wire: not an http(s) URL, a header with a line break or
    a character beyond Latin-1."""


class Stale(Exception):
    """A kept-alive connection the worker had closed before our request reached it."""


class Connection(asyncio.Protocol):
    """One TCP connection and the answer it is reading (it is that answer, for the caller)."""

    def __init__(self, pool: H1Pool, origin: tuple[str, int, bool]):
        self._pool = pool
        self.origin = origin
        self._loop = pool.loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.used = False  # has answered a request before: a failure may mean "stale"
        self.held = False  # handed out as an answer, not yet closed
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.content_type: str | None = None
        self._framed = False  # content-length or chunked: EOF is not the end of the body
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._received = False
        self._complete = False
        self._keep_alive = False
        self._paused = False
        self._whole = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._received = True
        self._last = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BadResponse(f"malformed answer: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._complete or self._error is not None:
            return
        if self.status and not self._framed:
            self._complete = True  # a body delimited by the end of the connection
            self._wake()
        elif self.used and not self._received:
            self._fail(Stale())
        else:
            what = "mid-answer" if self._received else "before answering"
            self._fail(ConnectionLost(f"the worker closed the connection {what}"))

    def pause_writing(self) -> None:  # a large body: the transport buffers it, bounded by us
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-type":
            self.content_type = value.decode("latin-1")
        elif lowered in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not (self._paused or self._whole):
            assert self._transport is not None
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        self._cancel_timer()
        self._wake()

    # the request

    def send(self, head: bytes, body: bytes | None) -> None:
        assert self._transport is not None
        if self.used:
            self._reset()  # the parser carries on: llhttp reads one answer after another
        self._last = self._loop.time()
        self._timer = self._loop.call_later(self._pool.read_timeout, self._on_timer)
        if not body:
            self._transport.write(head)
        elif len(body) <= _ONE_WRITE:
            self._transport.write(head + body)  # one segment, one syscall
        else:
            self._transport.writelines((head, body))

    async def head(self) -> None:
        while not self.status:
            await self._wait()

    # Answer (server/upstream/transport.py)

    async def read(self) -> bytes:
        self._whole = True  # the caller keeps the whole answer anyway: no pausing
        self._resume()
        while not self._complete:
            await self._wait()
        return b"".join(self._body)

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self._body:
                chunk = b"".join(self._body) if len(self._body) > 1 else self._body[0]
                self._body.clear()
                self._buffered = 0
                self._resume()
                yield chunk
            elif self._complete:
                return
            else:
                await self._wait()

    async def aclose(self) -> None:
        self._cancel_timer()
        if not self.held:
            return
        self.held = False
        reusable = self._complete and self._keep_alive and not self.closed and self._error is None
        if not reusable:
            self.close()
        self._pool.release(self, reusable)

    def reusable(self, oldest_usable: float) -> bool:
        """Idle, open, and idle since `oldest_usable` (the pool's keep-alive) or later."""
        return not self.closed and self.idle_since > oldest_usable

    # internals

    def _resume(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self._transport is not None:
            self._transport.close()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._cancel_timer()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _on_timer(self) -> None:
        self._timer = None
        if self._complete or self._error is not None:
            return
        left = self._last + self._pool.read_timeout - self._loop.time()
        if left > 0 or self._paused:  # bytes came since, or the reader is behind: not a gap
            self._timer = self._loop.call_later(max(left, 0.05), self._on_timer)
            return
        self._fail(ReadTimeout(f"no byte from the worker in {self._pool.read_timeout:g} s"))
        self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
