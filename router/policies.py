"""Routing policies: `choose(candidates, request, loads) -> Backend` over plain data.

Every policy gets only healthy candidates (never empty) and a view of their load; none ever
sees an HTTP request.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Callable, Sequence
from typing import Protocol

from router.prefix import PrefixIndex
from router.types import Backend, RouteRequest


class LoadView(Protocol):
    def score(self, worker_id: str) -> float: ...


class Policy(Protocol):
    def choose(
        self, candidates: Sequence[Backend], request: RouteRequest, loads: LoadView
    ) -> Backend: ...


def preferred_worker(
    candidates: Sequence[Backend], request: RouteRequest, loads: LoadView, load_factor: float
) -> Backend | None:
    """The request's preferred worker, while it is a candidate (healthy, serving the model) and
    not overloaded: its load, this request included, at most `load_factor` times the average,
    rounded up as in consistent hashing with bounded loads (so that an idle pool never counts
    as overloaded). None otherwise: then the model's policy decides."""
    if request.preferred is None:
        return None
    chosen = next((b for b in candidates if b.id == request.preferred), None)
    if chosen is None:
        return None
    total = sum(loads.score(b.id) for b in candidates)
    cap = math.ceil(load_factor * (total + 1) / len(candidates))
    return chosen if loads.score(chosen.id) + 1 <= cap else None


class RoundRobin:
    """Plain rotation over whatever is healthy right now."""

    def __init__(self) -> None:
        self._next = 0

    def choose(
        self, candidates: Sequence[Backend], request: RouteRequest, loads: LoadView
    ) -> Backend:
        backend = candidates[self._next % len(candidates)]
        self._next += 1
        return backend


class LeastLoad:
    """Power of two choices: sample two, take the less loaded. Nearly as good as scanning
    all workers, without herding every request onto the one that looked idlest."""

    def __init__(self, rng: random.Random | None = None):
        self._rng = rng or random.Random()

    def choose(
        self, candidates: Sequence[Backend], request: RouteRequest, loads: LoadView
    ) -> Backend:
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(list(candidates), 2)
        return a if loads.score(a.id) <= loads.score(b.id) else b


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class SessionAffinity:
    """Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2018).

    A key goes to the first worker clockwise from its hash on a ring of virtual nodes, unless
    that worker already carries more than `load_factor` times the average load; then the next
    one. Adding or removing a worker moves only about 1/N of the keys.
    """

    def __init__(
        self, load_factor: float = 1.25, replicas: int = 64, fallback: Policy | None = None
    ):
        self._load_factor = load_factor
        self._replicas = replicas
        self._fallback = fallback or LeastLoad()
        self._ring_for: tuple[str, ...] = ()
        self._ring: list[tuple[int, str]] = []

    def _ring_of(self, candidates: Sequence[Backend]) -> list[tuple[int, str]]:
        ids = tuple(sorted(b.id for b in candidates))
        if ids != self._ring_for:
            self._ring = sorted((_point(f"{i}#{r}"), i) for i in ids for r in range(self._replicas))
            self._ring_for = ids
        return self._ring

    def choose(
        self, candidates: Sequence[Backend], request: RouteRequest, loads: LoadView
    ) -> Backend:
        if request.session_key is None or len(candidates) == 1:
            return self._fallback.choose(candidates, request, loads)
        by_id = {b.id: b for b in candidates}
        ring = self._ring_of(candidates)
        total = sum(loads.score(i) for i in by_id)
        cap = self._load_factor * (total + 1) / len(by_id)
        start = bisect.bisect(ring, (_point(request.session_key), ""))
        seen: set[str] = set()
        for offset in range(len(ring)):
            worker_id = ring[(start + offset) % len(ring)][1]
            if worker_id in seen:
                continue
            seen.add(worker_id)
            if loads.score(worker_id) + 1 <= cap:
                return by_id[worker_id]
        return by_id[ring[start % len(ring)][1]]


class PrefixAware:
    """Send a prompt where its leading blocks were recently served, unless that worker is
    busier than the match is worth: score = matched fraction - beta * relative load.

    The load term keeps one hot prefix from piling onto one worker (production-stack #1073):
    once a worker carries `1/beta` more requests than the least loaded, a full match no longer
    wins. Requests with no prefix signal fall back to least load.
    """

    def __init__(
        self,
        index: PrefixIndex,
        beta: float = 0.2,
        fallback: Policy | None = None,
        on_record: Callable[[int], None] | None = None,
    ):
        self._index = index
        self._beta = beta
        self._fallback = fallback or LeastLoad()
        self._on_record = on_record

    def choose(
        self, candidates: Sequence[Backend], request: RouteRequest, loads: LoadView
    ) -> Backend:
        if not request.prefix:
            return self._fallback.choose(candidates, request, loads)
        matched = self._index.match(request.prefix, [b.id for b in candidates])
        scores = {b.id: loads.score(b.id) for b in candidates}
        floor = min(scores.values())
        blocks = len(request.prefix)

        def value(backend: Backend) -> tuple[float, float]:
            gain = matched[backend.id] / blocks - self._beta * (scores[backend.id] - floor)
            return (gain, -scores[backend.id])

        best = max(candidates, key=value)
        if matched[best.id] == 0:
            best = self._fallback.choose(candidates, request, loads)
        self._index.record(request.prefix, best.id)
        if self._on_record is not None:
            self._on_record(len(self._index))
        return best
