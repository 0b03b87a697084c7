"""router/flow.py: strict priority, fairness, TTL, caps, cancel, memory, saturation."""

from __future__ import annotations

import contextlib
import gc
import random
import tracemalloc

import pytest

from router.flow import (
    UNBOUNDED,
    BandFull,
    BandLimits,
    FlowQueue,
    Outcome,
    Thresholds,
    headroom,
)
from router.load import EngineStats, Load, LoadTracker
from server.services.load_scrape import parse_embedding_stats

BANDS = (BandLimits(cap=100_000, ttl=60.0),) * 3
SMALL = (BandLimits(cap=5_000, ttl=60.0),) * 3


def _queue(**kwargs: int) -> FlowQueue[None]:
    return FlowQueue(BANDS, **kwargs)


def test_bands_are_served_in_strict_priority() -> None:
    queue = _queue()
    for band in (2, 1, 2, 0, 1, 0):
        queue.push(band, f"t{band}", 10, 0.0, None)
    assert [t.band for t in iter(queue.pop, None)] == [0, 0, 1, 1, 2, 2]
    assert len(queue) == 0


def test_a_lower_band_waits_while_a_higher_one_keeps_arriving() -> None:
    queue = _queue()
    queue.push(1, "batch", 1, 0.0, None)
    for _ in range(50):
        queue.push(0, "chat", 1, 0.0, None)
        ticket = queue.pop()
        assert ticket is not None
        assert ticket.band == 0
    assert queue.depth(1) == 1


@pytest.mark.parametrize(("rate_a", "rate_b"), [(1, 1), (10, 1), (1, 7), (50, 3)])
def test_two_backlogged_tenants_share_admissions_equally(rate_a: int, rate_b: int) -> None:
    queue: FlowQueue[None] = FlowQueue(SMALL)
    rng = random.Random(rate_a * 100 + rate_b)
    admitted = {"a": 0, "b": 0}
    for _ in range(5):  # both start backlogged
        queue.push(1, "a", 100, 0.0, None)
        queue.push(1, "b", 100, 0.0, None)
    for _ in range(10_000):
        for flow, rate in (("a", rate_a), ("b", rate_b)):
            for _ in range(rng.randint(0, 2 * rate)):
                with contextlib.suppress(BandFull):  # the flood overflows the cap: refused
                    queue.push(1, flow, 100, 0.0, None)
        if not (queue.depth(1) and queue.flows(1) == 2):
            continue
        ticket = queue.pop()
        assert ticket is not None
        admitted[ticket.flow] += 1
    share = admitted["a"] / sum(admitted.values())
    assert sum(admitted.values()) > 9_000
    assert 0.45 <= share <= 0.55, admitted


def test_fairness_counts_tokens_not_requests() -> None:
    queue = _queue(quantum=100)
    for _ in range(2_000):
        queue.push(1, "long", 400, 0.0, None)
        queue.push(1, "short", 100, 0.0, None)
    tokens = {"long": 0, "short": 0}
    for _ in range(1_000):
        ticket = queue.pop()
        assert ticket is not None
        tokens[ticket.flow] += ticket.cost
    assert abs(tokens["long"] - tokens["short"]) <= 400


def test_first_come_first_served_within_a_flow() -> None:
    queue = _queue()
    pushed = [queue.push(1, "t", 5, 0.0, None)[0].seq for _ in range(20)]
    assert [t.seq for t in iter(queue.pop, None)] == pushed


def test_tickets_past_their_ttl_expire_in_order() -> None:
    queue: FlowQueue[None] = FlowQueue([BandLimits(10, 1.0), BandLimits(10, 5.0)])
    early = queue.push(0, "a", 1, 0.0, None)[0]
    late = queue.push(0, "b", 1, 0.5, None)[0]
    slow = queue.push(1, "a", 1, 0.0, None)[0]
    assert list(queue.expire(0.9)) == []
    assert list(queue.expire(1.0)) == [early]
    assert early.outcome is Outcome.EXPIRED
    assert list(queue.expire(4.0)) == [late]
    assert len(queue) == 1
    assert queue.flows(0) == 0
    assert queue.pop() is slow


def test_a_full_band_refuses_more() -> None:
    queue: FlowQueue[None] = FlowQueue([BandLimits(3, 60.0), BandLimits(2, 60.0)])
    queue.push(1, "t", 1, 0.0, None)
    queue.push(1, "u", 1, 0.0, None)
    with pytest.raises(BandFull):
        queue.push(1, "u", 1, 0.0, None)
    for _ in range(3):
        queue.push(0, "t", 1, 0.0, None)
    with pytest.raises(BandFull):
        queue.push(0, "t", 1, 0.0, None)
    assert len(queue) == 5


def test_a_full_band_sheds_the_flooding_tenants_newest_for_another() -> None:
    queue: FlowQueue[None] = FlowQueue([BandLimits(4, 60.0)])
    flood = [queue.push(0, "flood", 1, 0.0, None)[0] for _ in range(4)]
    ticket, shed = queue.push(0, "quiet", 1, 0.0, None)
    assert shed is flood[-1]
    assert shed.outcome is Outcome.SHED
    queue.push(0, "quiet", 1, 0.0, None)  # 2 against 2 now: the next one is refused
    with pytest.raises(BandFull):
        queue.push(0, "quiet", 1, 0.0, None)
    with pytest.raises(BandFull):
        queue.push(0, "flood", 1, 0.0, None)
    assert ticket.outcome is Outcome.QUEUED


def test_when_everything_is_full_the_lowest_band_is_shed_first() -> None:
    queue: FlowQueue[None] = FlowQueue([BandLimits(5, 60.0), BandLimits(5, 60.0)], max_total=3)
    batch = [queue.push(1, "b", 1, 0.0, None)[0] for _ in range(3)]
    ticket, shed = queue.push(0, "chat", 1, 0.0, None)
    assert shed is batch[-1]
    assert shed.outcome is Outcome.SHED
    assert len(queue) == 3
    assert queue.depth(1) == 2
    with pytest.raises(BandFull):  # nothing below the lowest band to displace
        queue.push(1, "b", 1, 0.0, None)
    assert queue.pop() is ticket


def test_a_cancelled_ticket_leaves_no_trace() -> None:
    queue = _queue()
    ticket, _ = queue.push(2, "alone", 7, 0.0, None)
    other, _ = queue.push(2, "other", 7, 0.0, None)
    assert queue.cancel(ticket)
    assert not queue.cancel(ticket)
    assert ticket.outcome is Outcome.CANCELLED
    assert len(queue) == 1
    assert queue.depth(2) == 1
    assert queue.flows(2) == 1
    assert queue.pop() is other
    assert len(queue) == 0
    assert queue.flows(2) == 0
    assert not queue.cancel(other)  # already admitted
    band = queue._bands[2]
    assert not band.flows
    assert not band.arrivals


def test_memory_of_100000_queued_tickets_is_bounded_and_returned() -> None:
    queue = _queue()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tickets = [queue.push(i % 3, f"t{i % 50}", 100, 0.0, None)[0] for i in range(100_000)]
        held = tracemalloc.get_traced_memory()[0] - before
        assert held / len(tickets) < 1024, held / len(tickets)
        for ticket in tickets[::2]:
            queue.cancel(ticket)
        while queue.pop() is not None:
            pass
        del tickets
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(queue) == 0
    assert left < 64 * 1024, left


def test_refused_pushes_do_not_grow_memory() -> None:
    queue: FlowQueue[None] = FlowQueue([BandLimits(1000, 60.0)])
    for i in range(1000):
        queue.push(0, f"t{i}", 1, 0.0, None)
    for i in range(10_000):
        with pytest.raises(BandFull):
            queue.push(0, f"new{i}", 1, 0.0, None)
    assert len(queue) == 1000
    assert queue.flows(0) == 1000


def _load(in_flight: int, waiting: float = 0.0, kv: float = 0.0, age: float | None = 0.5) -> Load:
    engine = None if age is None else EngineStats(1.0, waiting, kv, 0.0)
    return Load(in_flight, engine, age)


LIMITS = Thresholds(max_in_flight=4, max_waiting=2, max_kv_cache_usage=0.9)


def test_headroom_follows_each_signal() -> None:
    assert headroom(_load(1), LIMITS) == 3
    assert headroom(_load(4), LIMITS) == 0
    assert headroom(_load(0, waiting=2), LIMITS) == 0
    assert headroom(_load(0, kv=0.95), LIMITS) == 0
    assert headroom(_load(100), Thresholds()) == UNBOUNDED


def test_stale_engine_stats_count_as_saturated_but_never_deadlock() -> None:
    stale = Load(2, None, 30.0)
    assert headroom(stale, LIMITS) == 0
    assert headroom(Load(0, None, 30.0), LIMITS) == 1


def test_a_worker_without_engine_stats_is_judged_by_in_flight_alone() -> None:
    # an embedding worker, or a chat worker before its first scrape
    assert headroom(_load(3, age=None), LIMITS) == 1
    assert headroom(_load(4, age=None), LIMITS) == 0


def test_headroom_from_a_load_tracker() -> None:
    now = [100.0]
    tracker = LoadTracker(stale_after=5.0, clock=lambda: now[0])
    assert headroom(tracker.load("w"), LIMITS) == 4  # never scraped: fresh start admits
    tracker.record("w", EngineStats(1.0, 3.0, 0.1, 100.0))
    assert headroom(tracker.load("w"), LIMITS) == 0
    tracker.record("w", EngineStats(1.0, 0.0, 0.1, 100.0))
    with tracker.track("w"):
        assert headroom(tracker.load("w"), LIMITS) == 3
        now[0] = 106.0
        assert headroom(tracker.load("w"), LIMITS) == 0  # stale, one already in flight
    assert headroom(tracker.load("w"), LIMITS) == 1


def test_embedding_worker_queue_is_scraped_as_waiting_inputs() -> None:
    text = "# HELP ragway_embedding_queued_inputs x\nragway_embedding_queued_inputs 37.0\n"
    stats = parse_embedding_stats(text, 5.0)
    assert stats == EngineStats(0.0, 37.0, 0.0, 5.0)
    assert parse_embedding_stats("vllm:num_requests_running 1.0\n", 5.0) is None
    assert headroom(Load(0, stats, 0.1), Thresholds(max_in_flight=8, max_waiting=32)) == 0
