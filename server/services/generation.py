"""Chat and text completions: parse just enough, pick a worker, relay the answer.

The request body is forwarded as the client sent it, byte for byte, unless ragway has to
change something (an aliased model name). Streams are relayed as the worker's bytes, cut only
at event boundaries.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

from router.types import WorkerKind
from server.errors import (
    UpstreamBadResponse,
    UpstreamError,
)
from server.observability.metrics import GatewayMetrics
from server.observability.record import RequestRecord
from server.protocol.common import parse_request
from server.protocol.generation import ChatCompletionRequest, CompletionRequest
from server.protocol.responses import ResponsesRequest
from server.services.catalog import Catalog, Route
from server.services.dispatch import Dispatcher, Reroute
from server.services.flow import FlowControl, Go
from server.services.flow_gate import (
    admit,
    engine_priority,
    estimated_tokens,
    routed_after,
    stream_interval,
    with_engine_fields,
)
from server.services.rag_chat import RagChat, RagOutcome
from server.services.routing import prompt_prefix, session_key
from server.services.usage import StreamTap, usage_of
from server.settings import RagwaySettings
from server.tenancy.principal import ANONYMOUS, Principal
from server.tenancy.scopes import apply_to_body, require_model, with_salt
from server.upstream.client import Reply, UpstreamClient
from server.upstream.sse import EventCutter, data_event, done_event

log = logging.getLogger("ragway.generation")
# The first lines (without their line ending) of the events that end a Responses stream.
RESPONSES_STREAM_ENDS = (
    b"event: response.completed",
    b"event: response.incomplete",
    b"event: response.failed",
)


class Endpoint(Enum):
    CHAT = ("/v1/chat/completions", ChatCompletionRequest)
    COMPLETIONS = ("/v1/completions", CompletionRequest)
    # Prepared by server/responses/, which expands stored state into a stateless request.
    RESPONSES = ("/v1/responses", ResponsesRequest)

    @property
    def path(self) -> str:
        return self.value[0]  # type: ignore[no-any-return]

    @property
    def request_model(self) -> type[ChatCompletionRequest | CompletionRequest | ResponsesRequest]:
        return self.value[1]  # type: ignore[no-any-return]

    @property
    def stream_ends(self) -> tuple[bytes, ...]:
        """Events that end a stream without `[DONE]`: the Responses API sends none."""
        return RESPONSES_STREAM_ENDS if self is Endpoint.RESPONSES else ()


@dataclass(frozen=True, slots=True)
class Prepared:
    """A parsed request with its first route: everything needed to send it upstream, and to
    send it again elsewhere if that worker fails before answering."""

    endpoint: Endpoint
    model: str  # as the client asked
    served_model: str  # what routing looks up (a RAG virtual model's base model)
    stream: bool
    route: Route
    body: bytes
    request_id: str
    session_key: str | None = None
    prefix: tuple[int, ...] = ()
    rag: RagOutcome | None = None
    # ragway added include_usage to a stream; the usage chunk is removed from the client's copy.
    strip_usage: bool = False
    # Who asks (flow control's band and flow), and the request's estimated tokens.
    principal: Principal = ANONYMOUS
    cost: int = 0

    def url(self, route: Route) -> str:
        return route.backend.url + self.endpoint.path

    @property
    def headers(self) -> dict[str, str]:
        """Response headers ragway adds (RAG's sources)."""
        return self.rag.headers if self.rag is not None else {}


@dataclass(frozen=True, slots=True)
class Relayed:
    """An open stream: its events, and its line ending (the worker's framing), which ragway's
    own events and pings use too."""

    events: AsyncIterator[bytes]
    line: bytes


@dataclass
class _Opened:
    stack: AsyncExitStack
    chunks: AsyncIterator[bytes]
    cutter: EventCutter
    first: bytes


class GenerationService:
    def __init__(
        self,
        catalog: Catalog,
        upstream: UpstreamClient,
        dispatch: Dispatcher,
        *,
        settings: RagwaySettings,
        metrics: GatewayMetrics,
        rag: RagChat | None = None,
        flow: FlowControl | None = None,
    ):
        self._flow = flow
        self._catalog = catalog
        self._upstream = upstream
        self._dispatch = dispatch
        self._routing = settings.routing
        self._limits = settings.limits
        self._metrics = metrics
        self._rag = rag

    async def prepare(
        self,
        endpoint: Endpoint,
        raw: bytes,
        request_id: str,
        session_header: str | None = None,
        principal: Principal = ANONYMOUS,
    ) -> Prepared:
        data, request = await parse_request(raw, endpoint.request_model, self._limits)
        stream = bool(request.stream)
        require_model(principal, request.model, self._catalog.served_name)
        tenant_changed, salted = apply_to_body(principal, data)
        rag = None
        if endpoint is Endpoint.CHAT and self._rag is not None:
            rag = await self._rag.apply(data, request.model, request_id, principal)
        target = rag.model if rag is not None else request.model
        key = session_key(session_header, data)
        routed = rag.body if rag is not None else data
        # Keyed by the tenant's cache salt too: a worker's cached prefix only serves that tenant.
        prefix = prompt_prefix(routed, self._routing.prefix_block_chars, data.get("cache_salt"))
        route = self._catalog.route(
            WorkerKind.CHAT, target, request_id, session_key=key, prefix=prefix
        )
        forwarded = rag.body if rag is not None else data
        strip_usage = stream and not _asks_for_usage(forwarded)
        if strip_usage:
            forwarded["stream_options"] = {**(forwarded.get("stream_options") or {}),
                                           "include_usage": True}  # fmt: skip
        if rag is None and route.served_model != request.model:
            forwarded["model"] = route.served_model
        changed = (
            tenant_changed or rag is not None or strip_usage or route.served_model != request.model
        )
        priority = self.engine_priority(principal, route.served_model, data)
        if priority:
            forwarded["priority"] = priority
        interval = stream_interval(self._flow, principal, route.served_model, data) if stream else 0
        if interval:
            forwarded["stream_interval"] = interval
        body = raw
        if salted and not changed:
            body = with_salt(raw, data["cache_salt"]) or orjson.dumps(forwarded)
        elif changed:
            body = orjson.dumps(forwarded)
        if (priority or interval) and not changed:
            body = with_engine_fields(body, priority, interval) or orjson.dumps(forwarded)
        return Prepared(
            endpoint, request.model, target, stream, route, body, request_id, key, prefix, rag,
            strip_usage, principal, estimated_tokens(raw, data),
        )  # fmt: skip

    def engine_priority(self, principal: Principal, served: str, data: dict[str, Any]) -> int:
        """vLLM's `priority` for this caller's band (0: none to add); see flow_gate."""
        return engine_priority(self._flow, principal, served, data)

    async def unary(self, prepared: Prepared, record: RequestRecord) -> Reply:
        """The worker's whole answer; an error status comes back as-is, to relay unchanged."""

        def attempted(route: Route) -> None:
            record.worker = route.backend.id

        route = await self._admitted(prepared)
        reply = await self._dispatch.post(
            route,
            self._reroute(prepared),
            prepared.endpoint.path,
            prepared.body,
            on_attempt=attempted,
        )
        if reply.status == 200:
            record.usage(usage_of(reply.content))
        return prepared.rag.reply_with_sources(reply) if prepared.rag is not None else reply

    async def stream(self, prepared: Prepared, record: RequestRecord) -> Relayed:
        """Open the upstream stream and wait for its first whole event.

        Anything that fails before that raises (after failing over to other workers), so the
        client gets a proper HTTP status. After it, the returned iterator relays the rest;
        failures become an in-band error event, and nothing is retried.
        """

        def attempt(route: Route) -> Awaitable[_Opened]:
            record.worker = route.backend.id
            return self._open(prepared, route)

        route = await self._admitted(prepared)
        opened = await self._dispatch.failover(route, self._reroute(prepared), attempt)
        line = opened.cutter.line
        tap = StreamTap(record, prepared.strip_usage, line)
        first = tap(opened.first)
        if prepared.rag is not None:
            first = prepared.rag.first_events_with_sources(first, line)
        worker = record.worker

        def broke(exc: UpstreamError) -> None:
            self._metrics.upstream_errors.labels(exc.error_type).inc()
            log.warning(
                "stream %s from worker %s broke after it started: %s",
                prepared.request_id,
                worker,
                exc.message,
            )

        return Relayed(_relay(opened.stack, first, opened.chunks, opened.cutter, tap, broke), line)

    async def _open(self, prepared: Prepared, route: Route) -> _Opened:
        stack = AsyncExitStack()
        try:
            stack.enter_context(self._dispatch.track(route))
            url = prepared.url(route)
            chunks = await stack.enter_async_context(
                self._upstream.stream(url, prepared.body, route.headers)
            )
            cutter = EventCutter(prepared.endpoint.stream_ends)
            async for chunk in chunks:
                first = cutter.feed(chunk)
                if first:
                    return _Opened(stack, chunks, cutter, first)
            raise UpstreamBadResponse(
                f"worker {route.backend.id} ended the stream before any event"
            )
        except BaseException:
            await stack.aclose()
            raise

    async def _admitted(self, prepared: Prepared) -> Route:
        """The route once flow control admits the request: the prepared one when its worker
        has room (or flow control is off), else whichever worker frees up first."""
        route, flow = prepared.route, self._flow
        if flow is None or not flow.enabled:
            return route
        admission = admit(flow, WorkerKind.CHAT, route, prepared.principal, prepared.cost)
        if admission is Go.HERE:
            return route
        reroute = self._reroute(prepared)
        return await routed_after(
            flow, admission, WorkerKind.CHAT, route, prepared.principal, reroute
        )

    def _reroute(self, prepared: Prepared) -> Reroute:
        def reroute(tried: Sequence[str]) -> Route:
            return self._catalog.route(
                WorkerKind.CHAT,
                prepared.served_model,
                prepared.request_id,
                session_key=prepared.session_key,
                prefix=prepared.prefix,
                exclude=tried,
            )

        return reroute


def _asks_for_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


async def _relay(
    stack: AsyncExitStack,
    first: bytes,
    chunks: AsyncIterator[bytes],
    cutter: EventCutter,
    tap: StreamTap,
    broke: Callable[[UpstreamError], None],
) -> AsyncIterator[bytes]:
    """Relay the rest of the stream. A failure now can only be told in-band: an error event
    and `[DONE]` (and a warning and `ragway_upstream_errors_total` for the operator)."""
    async with stack:  # closing it closes the upstream connection: the worker stops generating
        if first:
            yield first
        try:
            async for chunk in chunks:
                events = cutter.feed(chunk)
                if events:
                    events = tap(events)
                    if events:
                        yield events
        except UpstreamError as exc:
            failure: UpstreamError | None = exc
        else:
            failure = (
                None if cutter.saw_done else UpstreamBadResponse("worker ended the stream early")
            )
        if failure is not None:
            broke(failure)
            yield data_event(failure.body(), cutter.line) + done_event(cutter.line)
