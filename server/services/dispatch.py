"""Reaching a worker: the one mechanism chat, completions, embeddings and RAG's embedding calls
(queries and ingest batches) all go through.

Each attempt is counted in the router's load tracker while it runs, so `least_load` and
`prefix_aware` see real in-flight counts. A failure before anything reached the client ejects
the worker (connection refused or reset, a 502/503/504) and the request goes to another one,
within `retries.max_attempts` and `retries.deadline`, after a doubling back-off. A dropped
connection is retried once on the same worker first: it is usually a stale keep-alive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TypeVar

from router.load import LoadTracker
from router.pool import WorkerPool
from router.types import WorkerKind
from server.errors import RagwayError, UpstreamConnectionLost, UpstreamError, UpstreamStatus
from server.observability.metrics import GatewayMetrics
from server.services.catalog import Catalog, Route
from server.settings import RetrySettings
from server.upstream.client import Reply, UpstreamClient

# A worker answering these is overloaded or behind a broken proxy: another may do better.
RETRYABLE_STATUSES = frozenset({502, 503, 504})

T = TypeVar("T")

# Another worker for the same request, skipping those already tried.
Reroute = Callable[[Sequence[str]], Route]


def embedding_reroute(catalog: Catalog, model: str, request_id: str) -> Reroute:
    """Another embedding worker for `model`."""

    def reroute(tried: Sequence[str]) -> Route:
        return catalog.route(WorkerKind.EMBEDDING, model, request_id, exclude=tried)

    return reroute


def _retryable(exc: UpstreamError) -> bool:
    if isinstance(exc, UpstreamStatus):
        return exc.upstream_status in RETRYABLE_STATUSES
    return exc.retryable


class Dispatcher:
    def __init__(
        self,
        upstream: UpstreamClient,
        pool: WorkerPool,
        loads: LoadTracker,
        retries: RetrySettings,
        metrics: GatewayMetrics,
    ):
        self._upstream = upstream
        self._pool = pool
        self._loads = loads
        self._retries = retries
        self._metrics = metrics

    @contextmanager
    def track(self, route: Route) -> Iterator[None]:
        """Count a request in flight on the route's worker while the block runs."""
        with self._loads.track(route.backend.id):
            yield

    async def failover(
        self, first: Route, reroute: Reroute, attempt: Callable[[Route], Awaitable[T]]
    ) -> T:
        """Run `attempt` on `first`; on a failure before any byte reached the client, eject
        that worker and try another from `reroute`. The last failure is raised."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retries.deadline
        route, tried, retried_same = first, [first.backend.id], False
        for number in range(1, self._retries.max_attempts + 1):
            try:
                result = await attempt(route)
            except UpstreamError as exc:
                worker = route.backend.id
                same = isinstance(exc, UpstreamConnectionLost) and not retried_same
                if not same and _retryable(exc):
                    self._pool.eject(worker, exc.message)
                last = number == self._retries.max_attempts or loop.time() >= deadline
                if last or not (same or _retryable(exc)):
                    raise
                self._metrics.retries.labels(exc.error_type).inc()
                if same:
                    retried_same = True
                    continue
                await asyncio.sleep(self._retries.backoff * 2 ** (len(tried) - 1))
                try:
                    route = reroute(tried)
                except RagwayError:
                    raise exc from None
                tried.append(route.backend.id)
            else:
                self._pool.succeeded(route.backend.id)
                return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def post(
        self,
        first: Route,
        reroute: Reroute,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        on_attempt: Callable[[Route], None] | None = None,
    ) -> Reply:
        """POST `body` to `path` on a worker, failing over as above, with `headers` added to the
        route's own. The worker's own answer comes back as-is, error statuses included (the
        last one, when every attempt failed)."""

        async def attempt(route: Route) -> Reply:
            if on_attempt is not None:
                on_attempt(route)
            sent = {**route.headers, **headers} if headers else route.headers
            with self._loads.track(route.backend.id):
                reply = await self._upstream.post(route.backend.url + path, body, sent)
            if reply.status in RETRYABLE_STATUSES:
                raise UpstreamStatus(reply.status, reply.content, reply.content_type)
            return reply

        try:
            return await self.failover(first, reroute, attempt)
        except UpstreamStatus as exc:
            return Reply(exc.upstream_status, exc.content, exc.content_type)
