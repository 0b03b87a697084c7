"""The one HTTP client the gateway uses to reach workers: requests on one connection pool,
health probes and /metrics scrapes on a small pool of their own. How bytes reach the wire is
server/upstream/transport.py's (server/upstream/h1.py, or an injected httpx transport in tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from server.errors import UpstreamBadResponse, UpstreamStatus
from server.settings import RagwaySettings
from server.upstream.errors import upstream_errors
from server.upstream.h1 import H1Pool
from server.upstream.transport import DEFAULT_HEADERS, Answer, HttpxTransport, Transport

_NO_HEADERS: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content: bytes
    content_type: str

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise UpstreamStatus(self.status, self.content, self.content_type)

    def json_object(self) -> dict[str, Any] | None:
        """A successful answer's body as a JSON object; None for anything else (an error, or a
        body that is not an object), which callers relay as it is."""
        if self.status != 200:
            return None
        try:
            answer = orjson.loads(self.content)
        except orjson.JSONDecodeError:
            return None
        return answer if isinstance(answer, dict) else None


class UpstreamClient:
    def __init__(self, settings: RagwaySettings, transport: httpx.AsyncBaseTransport | None = None):
        self._transport: Transport
        self._probes: Transport
        if transport is not None:
            self._transport = self._probes = HttpxTransport(transport, settings)
        else:
            self._transport = _pool(settings, settings.upstream.max_connections)
            # When every request connection is busy (stalled streams, RAG fan-out), probes
            # still reach the workers.
            self._probes = _pool(settings, settings.limits.probe_connections)

    async def aclose(self) -> None:
        if self._probes is not self._transport:
            await self._probes.aclose()
        await self._transport.aclose()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """A whole request and response; error statuses are returned, not raised."""
        with upstream_errors(url):
            answer = await self._transport.send("POST", url, body, headers)
            try:
                content = await answer.read()
            finally:
                await answer.aclose()
            return Reply(answer.status, content, answer.content_type or "application/json")

    @asynccontextmanager
    async def stream(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """An open streaming response with status 2xx, as its body's chunks as they arrive
        (transport errors translated). An error status is read whole and raised as
        UpstreamStatus, so the caller only ever sees a stream worth relaying. Leaving the
        block closes the connection, which is how a worker learns to stop generating."""
        with upstream_errors(url):
            answer = await self._transport.send("POST", url, body, headers)
        try:
            if answer.status >= 400:
                with upstream_errors(url):
                    content = await answer.read()
                raise UpstreamStatus(answer.status, content, answer.content_type)
            yield _translated(answer, url)
        finally:
            await answer.aclose()

    async def _get(self, url: str, time_limit: float) -> tuple[int, bytes, str | None]:
        with upstream_errors(url):
            async with asyncio.timeout(time_limit):
                answer = await self._probes.send("GET", url, None, _NO_HEADERS)
                try:
                    content = await answer.read()
                finally:
                    await answer.aclose()
        if answer.status != 200:
            raise UpstreamStatus(answer.status, content, answer.content_type)
        return answer.status, content, answer.content_type

    async def get_json(self, url: str, *, time_limit: float) -> Any:
        """GET a JSON document (health probes, /v1/models)."""
        _, content, _ = await self._get(url, time_limit)
        try:
            return orjson.loads(content) if content else None
        except orjson.JSONDecodeError as exc:
            raise UpstreamBadResponse(f"worker {url} sent invalid JSON") from exc

    async def get_text(self, url: str, *, time_limit: float) -> str:
        """GET a text document (a worker's Prometheus /metrics)."""
        _, content, _ = await self._get(url, time_limit)
        return content.decode("utf-8", errors="replace")


def _pool(settings: RagwaySettings, limit: int) -> H1Pool:
    t = settings.timeouts
    return H1Pool(
        limit=limit,
        connect_timeout=t.connect,
        pool_timeout=t.pool,
        read_timeout=t.read,
        keepalive=settings.upstream.keepalive_expiry,
        default_headers=DEFAULT_HEADERS,
    )


async def _translated(answer: Answer, url: str) -> AsyncIterator[bytes]:
    with upstream_errors(url):
        async for chunk in answer.chunks():
            yield chunk
