"""The gateway's HTTP server: uvicorn, configured from `limits`, plus the limits it lacks.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) and work in flight
(`limit_concurrency`, answered with 503), but a connection that sends half a request head and
then nothing, or stops in the middle of a body, is held forever, and httptools accepts a head
of any size. `GuardedHttpToolsProtocol` adds those three bounds to uvicorn's httptools protocol:

- the head (request line and headers) must arrive within `header_timeout`: 408, then close;
- the head may be at most `max_header_bytes`: 431, then close;
- a body may pause at most `body_timeout` between two reads: 408, then close. The app's
  `receive()` then says `http.disconnect`, so the handler stops too.

Under pressure (many unfinished heads or bodies at once, or connections near the cap) these
deadlines shorten for the connections concerned: server/slow_clients.py says when and how; a
lone slow client keeps them whole.

Timers are armed only when a read leaves a head or body unfinished, so a request that arrives
in one read (nearly all of them) costs no timer at all.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from server.api.edge import ON_DISCONNECT
from server.settings import LimitsSettings, RagwaySettings
from server.slow_clients import PendingReads

# Timers may fire a little early (uvloop's clock counts milliseconds): a deadline this close is
# due.
_EARLY_S = 0.002


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self, *args: Any, limits: LimitsSettings, pending: PendingReads, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._pending = pending
        self._head_bytes = 0
        self._in_head = True  # waiting for (the rest of) a request head
        self._head_started = False  # ... and some of it has come
        self._in_body = False
        self._last_read = 0.0
        self._head_deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._tracked = False  # counted in `pending`
        self._marked = False  # under pressure (server/slow_clients.py): the short rule
        self._marked_at = 0.0
        self._marked_bytes = 0
        # Called when the connection is lost: the ON_DISCONNECT extension of its requests.
        self._on_disconnect: list[Callable[[], None]] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._last_read = self.loop.time()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        # The work of requests still in flight on this connection (server/api/edge.py); each
        # takes its own entry out when it ends.
        for callback in self._on_disconnect[:]:
            callback()

    def data_received(self, data: bytes) -> None:
        self._last_read = self.loop.time()
        if self._in_head:
            self._head_bytes += len(data)
        if self._marked:
            self._marked_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes > self._limits.max_header_bytes:
            self._refuse(431, "Request header fields too large.")
        elif self._watchdog is None and self._in_body:
            self._watch(self._limits.body_timeout)
        elif self._watchdog is None and self._in_head and self._head_started:
            # A kept-alive connection's next request (idle ones are uvicorn's keep-alive's).
            self._watch_head()

    # httptools parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        self.scope["extensions"] = {ON_DISCONNECT: self._on_disconnect}  # type: ignore[dict-item]

    def on_headers_complete(self) -> None:
        self._in_head = self._head_started = False
        self._in_body, self._head_bytes = True, 0
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body, self._in_head = False, True
        self._disarm()
        super().on_message_complete()

    # The watchdog: armed only while a read has left a head or body unfinished.
    def _watch_head(self) -> None:
        # Whole-head deadline: a trickle of bytes does not extend it.
        self._head_deadline = self.loop.time() + self._limits.header_timeout
        self._watch(self._limits.header_timeout)

    def _watch(self, seconds: float) -> None:
        if not self._tracked:
            self._tracked = True
            if self._pending.add(self, len(self.connections)):
                self.shorten()
                return
        self._rearm(seconds)

    def shorten(self) -> None:
        """Under pressure: progress every `pressure_timeout` s and `pressure_min_rate` B/s."""
        if self._marked or self.transport.is_closing():
            return
        now = self.loop.time()
        self._marked, self._marked_at, self._marked_bytes = True, now, 0
        self._rearm(max(0.0, self._last_read + self._limits.pressure_timeout - now))

    def _rearm(self, seconds: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = self.loop.call_later(seconds, self._check)

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._tracked:
            self._tracked = self._marked = False
            self._pending.discard(self)

    def _check(self) -> None:
        self._watchdog = None
        if self.transport.is_closing() or not (self._in_head or self._in_body):
            return
        left = self._time_left(self.loop.time())
        if left > _EARLY_S:
            self._rearm(left)
        elif self._in_head:
            self._refuse(408, "Request headers not received in time.")
        else:
            self._refuse(408, "Request body not received in time.")

    def _time_left(self, now: float) -> float:
        limits = self._limits
        if self._in_head:
            left = self._head_deadline - now
        else:
            left = self._last_read + limits.body_timeout - now
        if not self._marked:
            return left
        elapsed = now - self._marked_at
        if elapsed >= limits.pressure_timeout and (
            self._marked_bytes < limits.pressure_min_rate * elapsed
        ):
            return 0.0
        return min(left, self._last_read + limits.pressure_timeout - now)

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` (unless a response has begun) and close the connection."""
        self._in_head = self._in_body = False
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            body = message.encode("ascii")
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        b"content-type: text/plain; charset=utf-8\r\n",
                        b"content-length: %d\r\n" % len(body),
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        self.logger.info("%s: closing the connection (%d)", message, status)
        self.transport.close()


# uvicorn's own graceful-shutdown timeout, beyond the drain's grace (server/drain.py): time for
# the streams cut at the end of the grace to send their error event and close.
SHUTDOWN_MARGIN_S = 2.0


def server_config(app: ASGIApp, settings: RagwaySettings) -> uvicorn.Config:
    limits = settings.limits
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http=functools.partial(  # type: ignore[arg-type]
            GuardedHttpToolsProtocol, limits=limits, pending=PendingReads.from_limits(limits)
        ),
        # Longer than any client's pool keep-alive, so clients never reuse a closing socket.
        timeout_keep_alive=int(limits.keep_alive),
        limit_concurrency=limits.max_connections,
        timeout_graceful_shutdown=math.ceil(settings.shutdown.grace + SHUTDOWN_MARGIN_S),
        # ragway never reads the client's address: no X-Forwarded-* parsing on every request.
        proxy_headers=False,
    )
