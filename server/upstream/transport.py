"""How UpstreamClient's requests reach the wire, behind one small seam (as httpx takes a
`transport=`): server/upstream/h1.py's own HTTP/1.1 pool in production, any httpx transport in
tests (an ASGITransport over a fake worker).

History, each step measured with `python -m benchmarks profile --tenancy`: httpx with
httpx-aiohttp's transport (an `httpx.Request` per call, translated into an aiohttp request and
back: a tenth of the gateway's CPU), then aiohttp called directly (aiohttp's client alone: a
quarter of the CPU on unary chats), now h1.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

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
