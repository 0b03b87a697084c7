"""Chat and text completions: parse just enough, pick a worker, relay the answer.

The request body is forwarded as the client sent it, byte for byte, unless ragway has to
change something (an aliased model name). Streams are relayed as the worker's bytes, cut only
at event boundaries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from enum import Enum

import orjson

from router.types import WorkerKind
from server.errors import UpstreamBadResponse, UpstreamError
from server.protocol.common import parse_body
from server.protocol.generation import ChatCompletionRequest, CompletionRequest
from server.services.catalog import Catalog, Route
from server.services.rag_chat import RagChat, RagOutcome
from server.upstream.client import Reply, UpstreamClient
from server.upstream.sse import DONE_EVENT, EventCutter, data_event


class Endpoint(Enum):
    CHAT = ("/v1/chat/completions", ChatCompletionRequest)
    COMPLETIONS = ("/v1/completions", CompletionRequest)

    @property
    def path(self) -> str:
        return self.value[0]  # type: ignore[no-any-return]

    @property
    def request_model(self) -> type[ChatCompletionRequest | CompletionRequest]:
        return self.value[1]  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A parsed request with its route: everything needed to send it upstream."""

    endpoint: Endpoint
    model: str
    stream: bool
    route: Route
    body: bytes
    rag: RagOutcome | None = None

    @property
    def url(self) -> str:
        return self.route.backend.url + self.endpoint.path

    @property
    def headers(self) -> dict[str, str]:
        """Response headers ragway adds (RAG's sources)."""
        return self.rag.headers if self.rag is not None else {}


class GenerationService:
    def __init__(self, catalog: Catalog, upstream: UpstreamClient, rag: RagChat | None = None):
        self._catalog = catalog
        self._upstream = upstream
        self._rag = rag

    async def prepare(self, endpoint: Endpoint, raw: bytes, request_id: str) -> Prepared:
        data, request = parse_body(raw, endpoint.request_model)
        stream = bool(request.stream)
        if endpoint is Endpoint.CHAT and self._rag is not None:
            rag = await self._rag.apply(data, request.model, request_id)
            if rag is not None:
                route = self._catalog.route(WorkerKind.CHAT, rag.model, request_id)
                return Prepared(endpoint, request.model, stream, route, orjson.dumps(rag.body), rag)
        route = self._catalog.route(WorkerKind.CHAT, request.model, request_id)
        body = raw
        if route.served_model != request.model:
            data["model"] = route.served_model
            body = orjson.dumps(data)
        return Prepared(endpoint, request.model, stream, route, body)

    async def unary(self, prepared: Prepared) -> Reply:
        """The worker's whole answer; an error status comes back as-is, to relay unchanged."""
        reply = await self._upstream.post(prepared.url, prepared.body, prepared.route.headers)
        return prepared.rag.reply_with_sources(reply) if prepared.rag is not None else reply

    async def stream(self, prepared: Prepared) -> AsyncIterator[bytes]:
        """Open the upstream stream and wait for its first whole event.

        Anything that fails before that raises, so the client gets a proper HTTP status. After
        it, the returned iterator relays the rest; failures become an in-band error event.
        """
        stack = AsyncExitStack()
        try:
            response = await stack.enter_async_context(
                self._upstream.stream(prepared.url, prepared.body, prepared.route.headers)
            )
            chunks = self._upstream.raw_iter(response, prepared.url)
            cutter = EventCutter()
            first = b""
            async for chunk in chunks:
                first = cutter.feed(chunk)
                if first:
                    break
            if not first:
                raise UpstreamBadResponse(
                    f"worker {prepared.route.backend.id} ended the stream before any event"
                )
        except BaseException:
            await stack.aclose()
            raise
        if prepared.rag is not None:
            first = prepared.rag.first_events_with_sources(first)
        return _relay(stack, first, chunks, cutter)


async def _relay(
    stack: AsyncExitStack, first: bytes, chunks: AsyncIterator[bytes], cutter: EventCutter
) -> AsyncIterator[bytes]:
    async with stack:  # closing it closes the upstream connection: the worker stops generating
        yield first
        try:
            async for chunk in chunks:
                events = cutter.feed(chunk)
                if events:
                    yield events
        except UpstreamError as exc:
            yield data_event(exc.body())
            yield DONE_EVENT
            return
        if not cutter.saw_done:
            yield data_event(UpstreamBadResponse("worker ended the stream early").body())
            yield DONE_EVENT
