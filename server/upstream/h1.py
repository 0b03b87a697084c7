"""HTTP/1.1 to the workers: keep-alive connections on asyncio protocols, answers parsed by
httptools (llhttp, the parser uvicorn serves ragway's own clients with).

A relay to a handful of known workers needs a small part of a general HTTP client: one request
at a time per connection, no redirects, cookies, proxies, compression or retries of answered
requests. aiohttp's client did all of that per request, and in the gateway's profile with auth
on (`python -m benchmarks profile --tenancy`, chat at concurrency 16) its own code took a
quarter of the CPU. Here a request is one write of its head and body, and the answer arrives
through the parser's callbacks into the connection that sent it.

Bounds: `limit` connections in use per pool (a request waits up to `pool_timeout` for one);
`connect_timeout` per connect; `read_timeout` for the gap between two bytes of an answer while
someone waits for it (a consumer that stops reading pauses the socket, which is not a gap);
at most `_HIGH_WATER` bytes of a streamed answer buffered before the socket is paused.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools

# Pause reading a streamed answer with this much buffered and unread; resume below a quarter.
_HIGH_WATER = 256 * 1024
_URL_CACHE_MAX = 1024
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


class _Stale(Exception):
    """A kept-alive connection the worker had closed before our request reached it."""


class _Target(NamedTuple):
    origin: tuple[str, int, bool]  # host, port, TLS
    path: str
    host: str  # the Host header


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
            self._fail(_Stale())
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


class H1Pool:
    """Keep-alive connections to any number of origins, at most `limit` in use at once."""

    def __init__(
        self,
        *,
        limit: int,
        connect_timeout: float,
        pool_timeout: float,
        read_timeout: float,
        keepalive: float,
        default_headers: Mapping[str, str],
    ):
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.pool_timeout = pool_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self._defaults = {k.lower(): v for k, v in default_headers.items()}
        self._idle: dict[tuple[str, int, bool], list[Connection]] = {}
        self._in_use = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._targets: dict[str, _Target] = {}
        self._tls: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Connection:
        """Send a request and wait for the answer's head; the returned connection is the
        answer (server/upstream/transport.py's `Answer`): read it, then `aclose()` it, which
        gives the connection back."""
        target = self._target(url)
        head = self._head(method, target, body, headers)
        await self._acquire()
        try:
            conn = self._idle_connection(target.origin) or await self._connect(target.origin)
            try:
                await self._exchange(conn, head, body)
            except _Stale:  # the worker never saw it: once more, on a new connection
                conn = await self._connect(target.origin)
                await self._exchange(conn, head, body)
        except BaseException:
            self._release_slot()
            raise
        conn.held = True
        return conn

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    def release(self, conn: Connection, reusable: bool) -> None:
        if reusable:
            conn.used = True
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.origin, []).append(conn)
        self._release_slot()

    def _idle_connection(self, origin: tuple[str, int, bool]) -> Connection | None:
        conns = self._idle.get(origin)
        if not conns:
            return None
        oldest_usable = time.monotonic() - self.keepalive
        while conns:
            conn = conns.pop()
            if not conn.closed and conn.idle_since > oldest_usable:
                return conn
            conn.close()
        return None

    @staticmethod
    async def _exchange(conn: Connection, head: bytes, body: bytes | None) -> None:
        conn.send(head, body)
        try:
            await conn.head()
        except _Stale:
            raise
        except BaseException:
            conn.close()
            raise

    async def _connect(self, origin: tuple[str, int, bool]) -> Connection:
        host, port, tls = origin
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, conn = await self.loop.create_connection(
                    lambda: Connection(self, origin),
                    host,
                    port,
                    ssl=self._tls_context() if tls else None,
                )
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc!r}") from None
        conn.connection_made(transport)  # uvloop calls it on the loop's next turn, not before
        return conn

    async def _acquire(self) -> None:
        if self._in_use < self.limit and not self._waiting:
            self._in_use += 1
            return
        waiter = self.loop.create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(self.pool_timeout):
                await waiter  # the releaser counted us in
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # handed a slot as we gave up: pass it on
            else:
                self._waiting.remove(waiter)
            raise PoolTimeout("no connection to the worker became free") from None

    def _release_slot(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to it; _in_use stays
                return
        self._in_use -= 1

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidRequest(f"not an http(s) URL: {url!r}")
            tls = parts.scheme == "https"
            port = parts.port or (443 if tls else 80)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            target = _Target((parts.hostname, port, tls), path, parts.netloc)
            if len(self._targets) >= _URL_CACHE_MAX:
                self._targets.clear()
            self._targets[url] = target
        return target

    def _head(
        self, method: str, target: _Target, body: bytes | None, headers: Mapping[str, str]
    ) -> bytes:
        fields = self._defaults | {k.lower(): v for k, v in headers.items()}
        if body is not None:
            fields["content-length"] = str(len(body))
        lines = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        if lines.count("\n") != len(fields) or lines.count("\r") != len(fields):
            raise InvalidRequest("a header name or value holds a line break")
        head = f"{method} {target.path} HTTP/1.1\r\nhost: {target.host}\r\n{lines}\r\n"
        try:
            return head.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidRequest("a header holds a character beyond Latin-1") from None

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls
