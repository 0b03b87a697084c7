"""Scrape each chat worker's vLLM `/metrics` for its queue and KV-cache use (and each
embedding worker's for its batch queue), on an interval, off the request path. The router
trusts what it finds only while it is fresh."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable

from router.load import EngineStats, LoadTracker
from router.pool import WorkerPool
from router.types import Backend, WorkerKind
from server.background import BackgroundTask
from server.errors import RagwayError
from server.observability.metrics import GatewayMetrics
from server.upstream.client import UpstreamClient

log = logging.getLogger("ragway.load")

_RUNNING = "vllm:num_requests_running"
_WAITING = "vllm:num_requests_waiting"
# vLLM renamed the KV-cache gauge; older engines only publish the GPU-named one.
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
# ragway's embedding worker: inputs waiting for a forward pass.
_EMBEDDING_QUEUE = "ragway_embedding_queued_inputs"


def parse_engine_stats(text: str, scraped_at: float) -> EngineStats | None:
    """The three gauges from vLLM's exposition text, summed over its label sets; None when
    the text is not a vLLM engine's. A plain line scan: the full parser costs 10x more."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in (_RUNNING, _WAITING) or name in _KV:
            with contextlib.suppress(ValueError, IndexError):
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    if _RUNNING not in values:
        return None
    kv = values.get(_KV[0], values.get(_KV[1], 0.0))
    return EngineStats(values[_RUNNING], values.get(_WAITING, 0.0), kv, scraped_at)


def parse_embedding_stats(text: str, scraped_at: float) -> EngineStats | None:
    """ragway's embedding worker's queue, as `waiting` (in inputs, not requests); None when
    the text has no such gauge (another embedding server)."""
    for line in text.splitlines():
        if line.startswith(_EMBEDDING_QUEUE + " "):
            with contextlib.suppress(ValueError):
                return EngineStats(0.0, float(line.rsplit(" ", 1)[1]), 0.0, scraped_at)
    return None


class LoadScraper:
    def __init__(
        self,
        pool: WorkerPool,
        upstream: UpstreamClient,
        loads: LoadTracker,
        metrics: GatewayMetrics,
        *,
        interval: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._pool = pool
        self._upstream = upstream
        self._loads = loads
        self._metrics = metrics
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        self._background = BackgroundTask("ragway-load-scrape")

    async def scrape_all(self) -> None:
        for state in self._pool.workers:
            # Read when Prometheus collects, not when this loop last ran: ragway's own count
            # has no reason to lag (a test that waited on the gauge once acted on a value a
            # second old). Set again each round, for a worker that left and came back.
            worker = state.backend.id
            gauge = self._metrics.worker_in_flight.labels(worker)
            gauge.set_function(functools.partial(self._loads.in_flight, worker))
        backends = [s.backend for s in self._pool.workers]
        await asyncio.gather(*(self.scrape(b) for b in backends if self._pool.is_up(b.id)))

    async def scrape(self, backend: Backend) -> None:
        try:
            text = await self._upstream.get_text(backend.url + "/metrics", time_limit=self._timeout)
        except RagwayError as exc:
            log.debug("no metrics from %s: %s", backend.id, exc)
            self._loads.forget(backend.id)
            return
        parse = parse_engine_stats if backend.kind is WorkerKind.CHAT else parse_embedding_stats
        stats = parse(text, self._clock())
        if stats is None:
            self._loads.forget(backend.id)
            return
        if not self._pool.has(backend.id):  # removed by discovery while the scrape ran
            return
        self._loads.record(backend.id, stats)
        self._metrics.worker_queue.labels(backend.id).set(stats.waiting)
        self._metrics.worker_kv_cache_usage.labels(backend.id).set(stats.kv_cache_usage)

    async def _run(self) -> None:
        while True:
            await self.scrape_all()
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._background.start(self._run)

    async def aclose(self) -> None:
        await self._background.aclose()
