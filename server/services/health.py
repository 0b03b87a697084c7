"""Active health probes: every worker's `/health`, then its `/v1/models`, on an interval.

A worker is up only when both answer: vLLM answers `/health` once its engine is ready, and its
model list is what routing needs. Results land in the router's pool; flips are logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from router.pool import WorkerPool
from router.types import Backend
from server.background import BackgroundTask
from server.errors import RagwayError, UpstreamTimeout
from server.observability.metrics import GatewayMetrics
from server.settings import HealthSettings
from server.upstream.client import UpstreamClient

log = logging.getLogger("ragway.health")


def _cards(document: Any) -> Sequence[Mapping[str, Any]]:
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list) or not all(isinstance(c, dict) and "id" in c for c in data):
        raise ValueError("/v1/models did not return an OpenAI model list")
    return data


class HealthMonitor:
    def __init__(
        self,
        pool: WorkerPool,
        upstream: UpstreamClient,
        settings: HealthSettings,
        metrics: GatewayMetrics,
    ):
        self._pool = pool
        self._upstream = upstream
        self._settings = settings
        self._metrics = metrics
        self._background = BackgroundTask("ragway-health")

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(state.backend) for state in self._pool.workers))

    async def probe_ids(self, worker_ids: list[str]) -> None:
        """Probe these workers now (new ones from discovery), not at the next interval."""
        wanted = set(worker_ids)
        await asyncio.gather(
            *(self.probe(s.backend) for s in self._pool.workers if s.backend.id in wanted)
        )

    async def probe(self, backend: Backend) -> None:
        limit = self._settings.timeout
        try:
            await self._upstream.get_json(backend.url + "/health", time_limit=limit)
            cards = _cards(
                await self._upstream.get_json(backend.url + "/v1/models", time_limit=limit)
            )
        except (RagwayError, ValueError) as exc:
            up, reason, found = False, str(exc), None
            definite = not isinstance(exc, UpstreamTimeout)
        else:
            up, reason, found, definite = True, "ok", cards, True
        flipped = self._pool.record_probe(
            backend.id, up=up, reason=reason, cards=found, definite=definite
        )
        if self._pool.has(backend.id):  # not removed by discovery while the probe ran
            self._metrics.worker_up.labels(backend.id, backend.kind.value).set(1 if up else 0)
        if flipped:
            log.info("worker %s is %s: %s", backend.id, "up" if up else "down", reason)

    async def _run(self) -> None:
        """Every worker each `interval`; between those, the down ones each `down_interval`."""
        loop = asyncio.get_running_loop()
        every = self._settings.interval
        tick = min(every, self._settings.down_interval)
        due = loop.time() + every
        while True:
            await asyncio.sleep(tick)
            if loop.time() >= due - tick / 2:
                due = loop.time() + every
                await self.probe_all()
            else:
                down = [s.backend for s in self._pool.workers if not s.health.up]
                await asyncio.gather(*(self.probe(backend) for backend in down))

    def start(self) -> None:
        self._background.start(self._run)

    async def aclose(self) -> None:
        await self._background.aclose()
