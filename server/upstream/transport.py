"""How UpstreamClient's requests reach the wire: aiohttp in production, any httpx transport in
tests (an ASGITransport over a fake worker), behind one small seam, as httpx takes a
`transport=`.

The production path calls aiohttp directly. It used to go through httpx with httpx-aiohttp's
transport: an `httpx.Request` built per call, then translated into an aiohttp request, and the
answer wrapped back into an `httpx.Response`. In the profile of a gateway with auth on
(`python -m benchmarks profile --tenancy`), httpx's and httpx-aiohttp's own code took about a
tenth of the gateway's CPU on unary chats. The exceptions stay aiohttp's own, which
server/upstream/errors.py translates (it looked them up first already).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp
import httpx

from server.settings import RagwaySettings

# Ask workers for unencoded bodies: ragway relays bytes and never wants to inflate them.
DEFAULT_HEADERS = {"accept-encoding": "identity", "user-agent": "ragway"}


class Answer(Protocol):
    """A worker's answer, its head read: the body is read whole or as it arrives, once."""

    @property
    def status(self) -> int: ...

    @property
    def content_type(self) -> str | None: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None:
        """Give the connection back when the body was read whole; otherwise close it, which is
        how a worker learns to stop generating."""


class Transport(Protocol):
    async def send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Answer: ...

    async def aclose(self) -> None: ...


class _AiohttpAnswer:
    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse):
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def content_type(self) -> str | None:
        return self._response.headers.get("content-type")

    async def read(self) -> bytes:
        return await self._response.read()

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_any():
            yield chunk

    async def aclose(self) -> None:
        if self._response.content.is_eof():
            self._response.release()  # back to the pool
        else:
            self._response.close()


class AiohttpTransport:
    """One aiohttp session and connection pool. `sock_read` bounds the gap between two bytes,
    as httpx's read timeout did; `connect` bounds the wait for a pooled connection and the
    connect together."""

    def __init__(self, settings: RagwaySettings, max_connections: int, total: float | None = None):
        t = settings.timeouts
        self._timeout = aiohttp.ClientTimeout(
            total=total, connect=t.pool, sock_connect=t.connect, sock_read=t.read
        )
        self._limit = max_connections
        self._keepalive = settings.upstream.keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        # Built on first use, inside the running loop (aiohttp binds the session to it).
        connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers=DEFAULT_HEADERS,
            auto_decompress=False,
            trust_env=False,
            # A relay keeps no cookies: a worker's Set-Cookie must not reach other requests.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Answer:
        session = self._session or self._open_session()
        response = await session.request(
            method, url, data=body, headers=headers, allow_redirects=False, compress=False
        )
        return _AiohttpAnswer(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _HttpxAnswer:
    __slots__ = ("_response",)

    def __init__(self, response: httpx.Response):
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def content_type(self) -> str | None:
        value: str | None = self._response.headers.get("content-type")
        return value

    async def read(self) -> bytes:
        return await self._response.aread()

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_raw():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxTransport:
    """Any httpx transport (tests: an ASGITransport over fake workers), asked directly."""

    def __init__(self, transport: httpx.AsyncBaseTransport, settings: RagwaySettings):
        t = settings.timeouts
        timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)
        self._transport = transport
        self._extensions = {"timeout": timeout.as_dict()}

    async def send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Answer:
        request = httpx.Request(
            method,
            url,
            content=body,
            headers={**DEFAULT_HEADERS, **headers},
            extensions=self._extensions,
        )
        return _HttpxAnswer(await self._transport.handle_async_request(request))

    async def aclose(self) -> None:
        await self._transport.aclose()
