"""The gateway's HTTP server: uvicorn, configured from `limits`, plus the limits it lacks.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) and work in flight
(`limit_concurrency`, answered with 503), but a connection that sends half a request head and
then nothing, or stops in the middle of a body, is held forever, and httptools accepts a head
of any size. `GuardedHttpToolsProtocol` adds those three bounds to uvicorn's httptools protocol:

- the head (request line and headers) must arrive within `header_timeout`: 408, then close;
- the head may be at most `max_header_bytes`: 431, then close;
- a body may pause at most `body_timeout` between two reads: 408, then close. The app's
  `receive()` then says `http.disconnect`, so the handler stops too.

Timers are armed only when a read leaves a head or body unfinished, so a request that arrives
in one read (nearly all of them) costs no timer at all.
"""

from __future__ import annotations

import asyncio
import functools
import math
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from server.settings import LimitsSettings, RagwaySettings


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: LimitsSettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._head_bytes = 0
        self._in_head = True  # waiting for (the rest of) a request head
        self._head_started = False  # ... and some of it has come
        self._in_body = False
        self._last_read = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_read = self.loop.time()
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes > self._limits.max_header_bytes:
            self._refuse(431, "Request header fields too large.")
        elif self._watchdog is None and self._in_body:
            self._arm(self._limits.body_timeout)
        elif self._watchdog is None and self._in_head and self._head_started:
            # A kept-alive connection's next request (idle ones are uvicorn's keep-alive's).
            self._arm(self._limits.header_timeout)

    # httptools parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True

    def on_headers_complete(self) -> None:
        self._in_head = self._head_started = False
        self._in_body, self._head_bytes = True, 0
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body, self._in_head = False, True
        self._disarm()
        super().on_message_complete()

    # The watchdog
    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._watchdog = self.loop.call_later(seconds, self._check)

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _check(self) -> None:
        self._watchdog = None
        if self.transport.is_closing():
            return
        if self._in_head:
            # Whole-head deadline: a trickle of bytes does not extend it.
            self._refuse(408, "Request headers not received in time.")
            return
        if not self._in_body:
            return
        idle = self.loop.time() - self._last_read
        if idle < self._limits.body_timeout:
            self._arm(self._limits.body_timeout - idle)
        else:
            self._refuse(408, "Request body not received in time.")

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
        http=functools.partial(GuardedHttpToolsProtocol, limits=limits),  # type: ignore[arg-type]
        # Longer than any client's pool keep-alive, so clients never reuse a closing socket.
        timeout_keep_alive=int(limits.keep_alive),
        limit_concurrency=limits.max_connections,
        timeout_graceful_shutdown=math.ceil(settings.shutdown.grace + SHUTDOWN_MARGIN_S),
        # ragway never reads the client's address: no X-Forwarded-* parsing on every request.
        proxy_headers=False,
    )
