"""The one HTTP client the gateway uses to reach workers.

httpx is the API; the default transport is httpx-aiohttp's, because httpx's own transport costs
about 20x more CPU per request (see DEVELOPERS.md), and a gateway's budget is well under 1 ms.
Tests inject any `httpx.AsyncBaseTransport` instead (an ASGITransport over a fake worker).

The request path (`post`, `stream`) builds an `httpx.Request` and hands it to the transport
itself. `httpx.AsyncClient.send` would add auth and redirect flows, event hooks and a cookie jar
(urllib's, run on every response), none of which a relay to workers uses. In the first profile
(before this change) httpx's own code and urllib took about a fifth of the gateway's CPU; the
saving was not measured on its own. Probes keep the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from server.errors import UpstreamBadResponse, UpstreamStatus
from server.settings import RagwaySettings
from server.upstream.errors import upstream_errors

# Ask workers for unencoded bodies: ragway relays bytes and never wants to inflate them.
_DEFAULT_HEADERS = {"accept-encoding": "identity", "user-agent": "ragway"}
_URL_CACHE_LIMIT = 4096  # parsed worker URLs (a few per worker); cleared when full


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
        t = settings.timeouts
        limits = httpx.Limits(
            max_connections=settings.upstream.max_connections,
            max_keepalive_connections=settings.upstream.max_connections,
            keepalive_expiry=settings.upstream.keepalive_expiry,
        )
        timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)
        self._transport = transport or AiohttpTransport(limits=limits)
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=timeout,
            limits=limits,
            headers=_DEFAULT_HEADERS,
            trust_env=False,
        )
        # Health probes and /metrics scrapes get a small pool of their own: when every request
        # connection is busy (stalled streams, RAG fan-out), probes still reach the workers.
        probe_limits = httpx.Limits(
            max_connections=settings.limits.probe_connections,
            max_keepalive_connections=settings.limits.probe_connections,
            keepalive_expiry=settings.upstream.keepalive_expiry,
        )
        self._probes = httpx.AsyncClient(
            transport=transport or AiohttpTransport(limits=probe_limits),
            timeout=timeout,
            limits=probe_limits,
            headers=_DEFAULT_HEADERS,
            trust_env=False,
        )
        self._extensions = {"timeout": timeout.as_dict()}
        self._urls: dict[str, httpx.URL] = {}

    async def aclose(self) -> None:
        await self._probes.aclose()
        await self._client.aclose()

    def _request(self, url: str, body: bytes, headers: Mapping[str, str]) -> httpx.Request:
        target = self._urls.get(url)
        if target is None:
            if len(self._urls) >= _URL_CACHE_LIMIT:
                self._urls.clear()
            target = self._urls[url] = httpx.URL(url)
        return httpx.Request(
            "POST",
            target,
            content=body,
            headers={**_DEFAULT_HEADERS, **headers},
            extensions=self._extensions,
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """A whole request and response; error statuses are returned, not raised."""
        with upstream_errors(url):
            response = await self._transport.handle_async_request(self._request(url, body, headers))
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            return Reply(
                response.status_code,
                content,
                response.headers.get("content-type", "application/json"),
            )

    @asynccontextmanager
    async def stream(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[httpx.Response]:
        """An open streaming response with status 2xx. An error status is read whole and raised
        as UpstreamStatus, so the caller only ever sees a stream worth relaying. Leaving the
        block closes the connection, which is how a worker learns to stop generating."""
        with upstream_errors(url):
            response = await self._transport.handle_async_request(self._request(url, body, headers))
        try:
            if response.status_code >= 400:
                with upstream_errors(url):
                    content = await response.aread()
                raise UpstreamStatus(
                    response.status_code, content, response.headers.get("content-type")
                )
            yield response
        finally:
            await response.aclose()

    async def get_json(self, url: str, *, time_limit: float) -> Any:
        """GET a JSON document (health probes, /v1/models)."""
        with upstream_errors(url):
            response = await self._probes.get(url, timeout=time_limit)
        if response.status_code != 200:
            raise UpstreamStatus(
                response.status_code, response.content, response.headers.get("content-type")
            )
        try:
            return orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError as exc:
            raise UpstreamBadResponse(f"worker {url} sent invalid JSON") from exc

    async def get_text(self, url: str, *, time_limit: float) -> str:
        """GET a text document (a worker's Prometheus /metrics)."""
        with upstream_errors(url):
            response = await self._probes.get(url, timeout=time_limit)
        if response.status_code != 200:
            raise UpstreamStatus(
                response.status_code, response.content, response.headers.get("content-type")
            )
        return response.text

    async def raw_iter(self, response: httpx.Response, url: str) -> AsyncIterator[bytes]:
        """The response body as it arrives, with transport errors translated."""
        with upstream_errors(url):
            async for chunk in response.aiter_raw():
                yield chunk
