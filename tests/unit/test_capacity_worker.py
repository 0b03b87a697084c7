"""The flow benchmark's capacity-modelling fake worker (benchmarks/capacity_worker.py): at most
`slots` sequences decode at once, the rest wait in arrival order (or by `priority` under the
priority policy), a cancelled sequence leaves, and /metrics reports what vLLM's would."""

from __future__ import annotations

import asyncio

from benchmarks.capacity_worker import Capacity, CapacityWorker, Engine, _Seq


async def _first_tokens(engine: Engine, seqs: list[_Seq]) -> list[int]:
    """The order in which the sequences got their first token."""
    order: list[int] = []

    async def watch(index: int, seq: _Seq) -> None:
        await seq.out.get()
        order.append(index)
        while await seq.out.get() is not None:
            pass

    task = asyncio.create_task(engine.run())
    await asyncio.wait_for(asyncio.gather(*(watch(i, s) for i, s in enumerate(seqs))), 10)
    task.cancel()
    return order


async def test_slots_bound_the_batch_and_the_rest_wait_in_order() -> None:
    engine = Engine(Capacity(slots=2, step_ms=1, per_seq_ms=0))
    seqs = [_Seq(prompt=4, remaining=3) for _ in range(5)]
    for seq in seqs:
        engine.submit(seq, priority=5 - len(engine.waiting))  # ignored under fcfs
    assert engine.queued() == 5
    assert await _first_tokens(engine, seqs) == [0, 1, 2, 3, 4]
    assert engine.completed == 5
    assert not engine.running
    assert engine.queued() == 0


async def test_priority_policy_orders_the_queue_and_cancelled_ones_leave() -> None:
    engine = Engine(Capacity(slots=1, step_ms=1, per_seq_ms=0, priority=True))
    seqs = [_Seq(prompt=4, remaining=2) for _ in range(4)]
    gone = _Seq(prompt=4, remaining=2, cancelled=True)
    engine.submit(seqs[0], priority=1)
    engine.submit(gone, priority=-9)
    engine.submit(seqs[1], priority=1)
    engine.submit(seqs[2], priority=0)
    engine.submit(seqs[3], priority=-1)
    assert engine.queued() == 4
    assert await _first_tokens(engine, seqs) == [3, 2, 0, 1]
    assert gone.generated == 0


def test_metrics_report_running_waiting_and_kv_use() -> None:
    worker = CapacityWorker(Capacity(slots=1, kv_tokens=100))
    worker.engine.running.append(_Seq(prompt=40, remaining=5, generated=10))
    worker.engine.submit(_Seq(prompt=4, remaining=1), priority=0)
    text = worker.metrics().decode()
    assert 'vllm:num_requests_running{model_name="bench-chat"} 1\n' in text
    assert 'vllm:num_requests_waiting{model_name="bench-chat"} 1\n' in text
    assert 'vllm:kv_cache_usage_perc{model_name="bench-chat"} 0.5000\n' in text
