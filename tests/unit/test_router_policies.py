"""Routing policies as pure functions of candidates, request and load."""

from __future__ import annotations

import random
import tracemalloc
from collections import Counter

import pytest

from router.load import LoadTracker
from router.policies import LeastLoad, PrefixAware, RoundRobin, SessionAffinity
from router.pool import WorkerPool
from router.prefix import PrefixIndex, block_hashes
from router.types import Backend, RouteRequest, WorkerKind


def backends(n: int) -> list[Backend]:
    return [Backend(f"w{i}", f"http://w{i}", WorkerKind.CHAT, ("m",)) for i in range(n)]


class FixedLoad:
    def __init__(self, scores: dict[str, float] | None = None):
        self.scores = scores or {}

    def score(self, worker_id: str) -> float:
        return self.scores.get(worker_id, 0.0)


def shares(counts: Counter[str], n: int) -> list[float]:
    total = sum(counts.values())
    return [counts[f"w{i}"] / total for i in range(n)]


@pytest.mark.parametrize(
    "policy",
    [
        RoundRobin(),
        LeastLoad(random.Random(1)),
        SessionAffinity(),
        PrefixAware(PrefixIndex(100_000), fallback=LeastLoad(random.Random(2))),
    ],
    ids=["round_robin", "least_load", "session", "prefix_aware"],
)
def test_distribution_is_even_under_even_load(policy: object) -> None:
    workers = backends(4)
    counts: Counter[str] = Counter()
    for i in range(8000):
        prompt = f"conversation {i} " * 20  # distinct prefixes and session keys
        request = RouteRequest("m", session_key=f"user-{i}", prefix=block_hashes(prompt, 64))
        counts[policy.choose(workers, request, FixedLoad()).id] += 1  # type: ignore[attr-defined]
    assert all(0.2 < share < 0.3 for share in shares(counts, 4)), counts


def test_session_affinity_moves_about_one_nth_of_keys() -> None:
    policy = SessionAffinity()
    keys = [f"user-{i}" for i in range(5000)]

    def owners(workers: list[Backend]) -> dict[str, str]:
        return {k: policy.choose(workers, RouteRequest("m", k), FixedLoad()).id for k in keys}

    four = owners(backends(4))
    five = owners(backends(5))
    moved = sum(four[k] != five[k] for k in keys) / len(keys)
    assert 0.1 < moved < 0.3, moved  # ideal: 1/5
    assert all(five[k] == "w4" for k in keys if four[k] != five[k])  # moves only to the new one
    three = owners(backends(4)[:3])
    moved_back = [k for k in keys if four[k] != three[k]]
    assert all(four[k] == "w3" for k in moved_back)  # only the removed worker's keys move


def test_prefix_affinity_survives_adding_a_worker() -> None:
    index = PrefixIndex(10_000)
    policy = PrefixAware(index)
    prompts = [block_hashes(f"system prompt {i} " * 40, 64) for i in range(200)]

    def owner(workers: list[Backend], prefix: tuple[int, ...]) -> str:
        return policy.choose(workers, RouteRequest("m", prefix=prefix), FixedLoad()).id

    first = {p: owner(backends(4), p) for p in prompts}
    again = {p: owner(backends(5), p) for p in prompts}
    assert first == again  # a known prefix stays where its cache is


def test_load_bound_caps_a_hot_prefix() -> None:
    loads = LoadTracker(stale_after=5)
    policy = PrefixAware(PrefixIndex(1000), beta=0.2)
    workers = backends(4)
    hot = block_hashes("the same long system prompt " * 50, 64)
    held = []
    for _ in range(200):  # 200 concurrent requests that never finish
        chosen = policy.choose(workers, RouteRequest("m", prefix=hot), loads)
        tracker = loads.track(chosen.id)
        tracker.__enter__()
        held.append(tracker)
    in_flight = [loads.in_flight(w.id) for w in workers]
    assert max(in_flight) - min(in_flight) <= 1 / 0.2 + 1, in_flight
    assert max(in_flight) < 200 / 4 + 10


def test_session_affinity_bounds_a_hot_key() -> None:
    loads = LoadTracker(stale_after=5)
    policy = SessionAffinity(load_factor=1.25)
    workers = backends(4)
    for _ in range(100):
        chosen = policy.choose(workers, RouteRequest("m", session_key="hot-user"), loads)
        loads.track(chosen.id).__enter__()
    assert max(loads.in_flight(w.id) for w in workers) <= 1.25 * (100 / 4) + 2


def test_unhealthy_workers_are_never_candidates() -> None:
    pool = WorkerPool(backends(3))
    for i in range(3):
        pool.record_probe(f"w{i}", up=i != 1, reason="test", cards=[{"id": "m"}])
    pool.eject("w2", "connect error", now=100.0)
    candidates = pool.candidates(WorkerKind.CHAT, "m", now=100.5)
    assert [b.id for b in candidates] == ["w0"]
    for policy in (RoundRobin(), LeastLoad(), SessionAffinity(), PrefixAware(PrefixIndex(10))):
        for i in range(50):
            request = RouteRequest("m", f"k{i}", block_hashes(f"p{i}" * 100, 64))
            assert policy.choose(candidates, request, FixedLoad()).id == "w0"


def test_probe_timeouts_take_a_worker_down_only_at_the_threshold() -> None:
    pool = WorkerPool(backends(1), unhealthy_threshold=3)
    pool.record_probe("w0", up=True, reason="ok", cards=[{"id": "m"}])
    # A busy worker answering its probe late twice keeps its traffic; a success resets the count.
    for _ in range(2):
        assert not pool.record_probe("w0", up=False, reason="timed out", definite=False)
    assert pool.is_up("w0")
    pool.record_probe("w0", up=True, reason="ok")
    for _ in range(2):
        pool.record_probe("w0", up=False, reason="timed out", definite=False)
    assert pool.is_up("w0")
    assert pool.record_probe("w0", up=False, reason="timed out", definite=False)
    assert not pool.is_up("w0")
    # A refused connection takes it down at once.
    pool.record_probe("w0", up=True, reason="ok")
    assert pool.record_probe("w0", up=False, reason="refused")
    assert not pool.is_up("w0")


def test_prefix_index_stays_within_its_bound() -> None:
    index = PrefixIndex(max_entries=20_000)
    workers = [f"w{i}" for i in range(4)]
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for i in range(100_000):  # 100k distinct two-block prefixes
        index.record((i * 7919 + 1, i * 104729 + 3), workers[i % 4])
        if i % 1000 == 0:
            assert len(index) <= 20_000
    grown = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert len(index) == 20_000
    assert grown < 8 * 1024 * 1024, f"index grew by {grown} bytes"
