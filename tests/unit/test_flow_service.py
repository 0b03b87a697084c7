"""server/services/flow.py without HTTP: the futures, the pending count, the fast path."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack

import pytest
from prometheus_client import CollectorRegistry

from router.load import EngineStats, LoadTracker
from router.pool import WorkerPool
from router.types import Backend, WorkerKind
from server.errors import RequestDropped
from server.observability.flow_metrics import FlowMetrics
from server.services.flow import FlowControl, Go, Queued
from server.settings import FlowSettings
from server.tenancy.principal import Principal, PriorityClass

CHAT = WorkerKind.CHAT
TEAM = Principal(name="team")
BULK = Principal(name="bulk", priority=PriorityClass.BATCH)
HIGH = Principal(name="ops", priority=PriorityClass.HIGH)


def _flow(workers: tuple[str, ...] = ("w",), **settings: object) -> tuple[FlowControl, LoadTracker]:
    pool = WorkerPool(
        [Backend(id=w, url=f"http://{w}", kind=CHAT, declared_models=("m",)) for w in workers],
        eject_base=1.0,
        eject_max=2.0,
        unhealthy_threshold=1,
    )
    for worker in workers:
        pool.record_probe(worker, up=True, reason="ok")
    loads = LoadTracker(stale_after=5.0)
    limits = {"max_in_flight": 1, "max_waiting": 0, "max_kv_cache_usage": 0, **settings}
    flow = FlowControl(
        FlowSettings.model_validate(limits), pool, loads, FlowMetrics(CollectorRegistry())
    )
    return flow, loads


def _queue(flow: FlowControl, principal: Principal) -> Queued:
    queued = flow.enter(CHAT, "m", principal, 10, "w")
    assert isinstance(queued, Queued)
    return queued


async def test_the_fast_path_queues_nothing() -> None:
    flow, _ = _flow()
    assert flow.enter(CHAT, "m", TEAM, 10, "w") is Go.HERE
    assert flow.snapshot() == {}


async def test_a_request_routed_to_a_full_worker_goes_to_one_with_room() -> None:
    flow, loads = _flow(("a", "b"))
    with loads.track("a"):
        assert flow.enter(CHAT, "m", TEAM, 10, "a") is Go.ELSEWHERE
        assert flow.full(CHAT, "m", TEAM) == ["a"]
        with loads.track("b"):
            assert flow.full(CHAT, "m", TEAM) == []  # all full: route as usual
            assert isinstance(flow.enter(CHAT, "m", TEAM, 10, "a"), Queued)
    assert flow.full(CHAT, "unknown", TEAM) == []  # routing answers 404 for it


async def test_a_high_request_passes_batch_work_held_back_by_its_share() -> None:
    flow, loads = _flow(max_in_flight=4, batch={"share": 0.5})
    with loads.track("w"), loads.track("w"):
        batch = _queue(flow, BULK)
        high = flow.enter(CHAT, "m", HIGH, 10, "w")
        assert isinstance(high, Queued)  # the batch request was there first...
        await asyncio.wait_for(flow.wait(high), 1.0)  # ...but only high has room
        assert flow.snapshot()["m"]["batch"] == 1
        pending = asyncio.ensure_future(flow.wait(batch))
    await pending


async def test_an_admitted_request_whose_client_left_frees_its_slot_for_the_next() -> None:
    flow, loads = _flow()
    with ExitStack() as busy:
        busy.enter_context(loads.track("w"))
        first, second = _queue(flow, TEAM), _queue(flow, TEAM)
        assert first is not None
        assert second is not None
        waits = [asyncio.ensure_future(flow.wait(q)) for q in (first, second)]
        await asyncio.sleep(0)
    # The slot went to `first`; its client leaves before it resumes.
    assert flow.snapshot()["m"] == {"high": 0, "standard": 1, "batch": 0, "admitting": 1}
    waits[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await waits[0]
    await waits[1]  # admitted in its place
    assert flow.snapshot() == {}


async def test_a_higher_band_sheds_the_newest_batch_request_when_the_queue_is_full() -> None:
    flow, loads = _flow(max_queued=1)
    with loads.track("w"):
        batch = _queue(flow, BULK)
        assert batch is not None
        shed = asyncio.ensure_future(flow.wait(batch))
        high = _queue(flow, HIGH)
        assert high is not None
        with pytest.raises(RequestDropped) as info:
            await shed
        assert info.value.reason == "shed"
        admitted = asyncio.ensure_future(flow.wait(high))
    await admitted
    assert flow.snapshot() == {}


async def test_a_scrape_that_shows_room_admits_the_queue() -> None:
    flow, loads = _flow(max_in_flight=0, max_waiting=2)
    loads.record(
        "w", EngineStats(running=4, waiting=3, kv_cache_usage=0.5, scraped_at=time.monotonic())
    )
    queued = _queue(flow, TEAM)
    assert queued is not None
    waiting = asyncio.ensure_future(flow.wait(queued))
    await asyncio.sleep(0)
    assert not waiting.done()
    loads.record(
        "w", EngineStats(running=4, waiting=0, kv_cache_usage=0.5, scraped_at=time.monotonic())
    )
    await waiting


async def test_the_ttl_runs_out_without_any_event() -> None:
    flow, loads = _flow(standard={"ttl": 0.05})
    with loads.track("w"):
        queued = _queue(flow, TEAM)
        assert queued is not None
        with pytest.raises(RequestDropped) as info:
            await flow.wait(queued)
    assert info.value.reason == "queue_timeout"
    assert flow.snapshot() == {}
