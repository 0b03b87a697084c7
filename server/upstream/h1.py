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
at most 256 KiB of a streamed answer buffered before the socket is paused (connection.py).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from server.upstream.connection import (
    BadResponse,
    ConnectFailed,
    Connection,
    ConnectionLost,
    H1Error,
    InvalidRequest,
    PoolTimeout,
    ReadTimeout,
    Stale,
)

__all__ = [
    "BadResponse",
    "ConnectFailed",
    "ConnectionLost",
    "H1Error",
    "H1Pool",
    "InvalidRequest",
    "PoolTimeout",
    "ReadTimeout",
]

_URL_CACHE_MAX = 1024
# Every this many answers, idle connections past their keep-alive are closed and origins
# without any forgotten.
_SWEEP_EVERY = 1024


class _Target(NamedTuple):
    origin: tuple[str, int, bool]  # host, port, TLS
    path: str
    host: str  # the Host header


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
        self._releases = 0
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
            except Stale:  # the worker never saw it: once more, on a new connection
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
        self._releases += 1
        if self._releases % _SWEEP_EVERY == 0:
            self._sweep()

    def _sweep(self) -> None:
        """Close idle connections past their keep-alive, and forget origins left without any
        (workers that discovery removed, whose connections would otherwise wait forever)."""
        oldest_usable = time.monotonic() - self.keepalive
        for origin, conns in list(self._idle.items()):
            for conn in conns:
                if not conn.reusable(oldest_usable):
                    conn.close()
            conns[:] = [conn for conn in conns if not conn.closed]
            if not conns:
                del self._idle[origin]

    def _idle_connection(self, origin: tuple[str, int, bool]) -> Connection | None:
        conns = self._idle.get(origin)
        if not conns:
            return None
        oldest_usable = time.monotonic() - self.keepalive
        while conns:
            conn = conns.pop()
            if conn.reusable(oldest_usable):
                return conn
            conn.close()
        return None

    @staticmethod
    async def _exchange(conn: Connection, head: bytes, body: bytes | None) -> None:
        conn.send(head, body)
        try:
            await conn.head()
        except Stale:
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
