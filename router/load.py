"""How busy each worker is: ragway's own in-flight count, plus the engine's queue as last
scraped from its /metrics, trusted only while fresh."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EngineStats:
    """vLLM's own view, from `vllm:num_requests_running`, `vllm:num_requests_waiting` and
    `vllm:kv_cache_usage_perc` (`vllm:gpu_cache_usage_perc` on older engines)."""

    running: float
    waiting: float
    kv_cache_usage: float
    scraped_at: float


@dataclass(frozen=True, slots=True)
class Load:
    in_flight: int
    engine: EngineStats | None  # None when never scraped or stale
    engine_age: float | None

    @property
    def score(self) -> float:
        """One number to compare workers by: requests on the worker, queued ones included.
        ragway's in-flight count is exact for its own traffic; the engine's count also sees
        other clients' traffic, but lags by up to a scrape interval. Take the larger."""
        if self.engine is None:
            return float(self.in_flight)
        return max(float(self.in_flight), self.engine.running) + self.engine.waiting


class LoadTracker:
    def __init__(self, stale_after: float, clock: Callable[[], float] = time.monotonic):
        self._stale_after = stale_after
        self._clock = clock
        self._in_flight: dict[str, int] = {}
        self._engine: dict[str, EngineStats] = {}
        self._on_change: Callable[[], None] | None = None

    def listen(self, on_change: Callable[[], None]) -> None:
        """Call `on_change` whenever a request leaves a worker or a scrape lands: the moments
        a saturated worker may have room again (flow control pumps its queue then)."""
        self._on_change = on_change

    @contextmanager
    def track(self, worker_id: str) -> Iterator[None]:
        """Count one request on `worker_id` for as long as the block runs."""
        self._in_flight[worker_id] = self._in_flight.get(worker_id, 0) + 1
        try:
            yield
        finally:
            # At zero the entry goes, so a worker that left the pool leaves nothing behind.
            left = self._in_flight[worker_id] - 1
            if left:
                self._in_flight[worker_id] = left
            else:
                del self._in_flight[worker_id]
            if self._on_change is not None:
                self._on_change()

    def in_flight(self, worker_id: str) -> int:
        return self._in_flight.get(worker_id, 0)

    def record(self, worker_id: str, stats: EngineStats) -> None:
        self._engine[worker_id] = stats
        if self._on_change is not None:
            self._on_change()

    def forget(self, worker_id: str) -> None:
        if self._engine.pop(worker_id, None) is not None and self._on_change is not None:
            self._on_change()

    def load(self, worker_id: str) -> Load:
        stats = self._engine.get(worker_id)
        age = None if stats is None else self._clock() - stats.scraped_at
        if age is not None and age > self._stale_after:
            stats = None
        return Load(self.in_flight(worker_id), stats, age)

    def score(self, worker_id: str) -> float:
        return self.load(worker_id).score
