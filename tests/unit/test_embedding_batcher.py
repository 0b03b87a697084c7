"""The embedding worker's dynamic batcher, against a fake encoder that records its batches."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from workers.embedding.batcher import BULK_NICE, DynamicBatcher, Embedded
from workers.embedding.encoder import Vectors
from workers.embedding.errors import EncoderFailed, QueueFull, WorkerShuttingDown
from workers.embedding.lane import Item, Job, pick
from workers.embedding.metrics import EmbeddingMetrics

DIM = 4


class RecordingEncoder:
    """Embeds "t<n>[ padding]" as [n, len, 0, 0], so each result names the text it came from;
    a text's length in characters is its token count.

    `gate`, when given, holds every forward pass (or, with `gate_prefix`, every pass holding a
    text with that prefix) until it is set; `started` is set when a pass begins. A batch
    holding "boom" raises.
    """

    def __init__(self, gate: threading.Event | None = None, gate_prefix: str = ""):
        self.batches: list[list[str]] = []
        self.gate = gate
        self.gate_prefix = gate_prefix
        self.started = threading.Event()

    @property
    def dimension(self) -> int:
        return DIM

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.batches.append(list(texts))
        self.started.set()
        if self.gate is not None and any(t.startswith(self.gate_prefix) for t in texts):
            self.gate.wait(5)
        if "boom" in texts:
            raise RuntimeError("boom")
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, 0] = float(text.split()[0].lstrip("tb"))
            out[row, 1] = len(text)
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(text) for text in texts]

    @property
    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


def ids(vectors: Vectors) -> list[int]:
    return [int(v) for v in vectors[:, 0]]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


async def started(
    encoder: RecordingEncoder,
    registry: CollectorRegistry,
    *,
    max_batch_size: int,
    max_wait: float,
    max_queue: int = 4096,
    max_batch_tokens: int = 4096,
) -> DynamicBatcher:
    batcher = DynamicBatcher(
        encoder,
        EmbeddingMetrics(registry),
        max_batch_size=max_batch_size,
        max_batch_tokens=max_batch_tokens,
        max_wait=max_wait,
        max_queue=max_queue,
    )
    batcher.start()
    return batcher


@pytest.fixture
async def encoder() -> RecordingEncoder:
    return RecordingEncoder()


@pytest.fixture
async def batcher(
    encoder: RecordingEncoder, registry: CollectorRegistry
) -> AsyncIterator[DynamicBatcher]:
    batcher = await started(encoder, registry, max_batch_size=8, max_wait=0.05)
    yield batcher
    await batcher.aclose()


async def test_concurrent_requests_share_forward_passes(
    batcher: DynamicBatcher, encoder: RecordingEncoder
) -> None:
    results = await asyncio.gather(*(batcher.embed([f"t{i}"]) for i in range(20)))

    assert len(encoder.batches) < 20
    assert max(encoder.sizes) <= 8
    assert sum(encoder.sizes) == 20
    # Each caller gets its own text's vector back.
    assert [ids(r.vectors) for r in results] == [[i] for i in range(20)]
    assert [r.token_counts for r in results] == [[len(f"t{i}")] for i in range(20)]


async def test_large_request_is_split_and_kept_in_order(
    batcher: DynamicBatcher, encoder: RecordingEncoder
) -> None:
    texts = [f"t{i}" for i in range(19)]
    small, big = await asyncio.gather(batcher.embed(["t100", "t101"]), batcher.embed(texts))

    assert encoder.sizes == [8, 8, 5]
    assert ids(big.vectors) == list(range(19))
    assert ids(small.vectors) == [100, 101]
    assert big.vectors.dtype == np.float32


async def test_encoder_failure_fails_only_its_batch(registry: CollectorRegistry) -> None:
    encoder = RecordingEncoder()
    batcher = await started(encoder, registry, max_batch_size=2, max_wait=0.05)
    try:
        results = await asyncio.gather(
            batcher.embed(["boom"]),
            batcher.embed(["t1"]),
            batcher.embed(["t2"]),
            batcher.embed(["t3"]),
            return_exceptions=True,
        )
        assert isinstance(results[0], EncoderFailed)
        assert isinstance(results[1], EncoderFailed)
        assert results[1].status == 500
        assert [ids(r.vectors) for r in results[2:] if isinstance(r, Embedded)] == [[2], [3]]
        # The collector is still alive for later requests.
        assert ids((await batcher.embed(["t9"])).vectors) == [9]
        assert batcher.running
    finally:
        await batcher.aclose()


async def test_full_queue_rejects(registry: CollectorRegistry) -> None:
    gate = threading.Event()
    encoder = RecordingEncoder(gate)
    batcher = await started(encoder, registry, max_batch_size=1, max_wait=0, max_queue=3)
    try:
        first = asyncio.create_task(batcher.embed(["t0"]))
        # Wait until that input is in the model thread, so the queue itself is empty.
        await asyncio.to_thread(encoder.started.wait, 5)
        queued = asyncio.create_task(batcher.embed(["t1", "t2", "t3"]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull) as caught:
            await batcher.embed(["t4"])
        assert caught.value.status == 503
        gate.set()
        assert ids((await first).vectors) == [0]
        assert ids((await queued).vectors) == [1, 2, 3]
    finally:
        gate.set()
        await batcher.aclose()


async def test_batch_is_sent_without_waiting_when_full(registry: CollectorRegistry) -> None:
    encoder = RecordingEncoder()
    # A max_wait this long would time the test out if a full batch still waited for it.
    batcher = await started(encoder, registry, max_batch_size=4, max_wait=30)
    try:
        result = await asyncio.wait_for(batcher.embed(["t1", "t2", "t3", "t4"]), 5)
        assert ids(result.vectors) == [1, 2, 3, 4]
    finally:
        await batcher.aclose()


async def test_cancelled_caller_is_skipped(registry: CollectorRegistry) -> None:
    gate = threading.Event()
    encoder = RecordingEncoder(gate)
    batcher = await started(encoder, registry, max_batch_size=4, max_wait=0)
    try:
        first = asyncio.create_task(batcher.embed(["t0"]))
        await asyncio.to_thread(encoder.started.wait, 5)
        gone = asyncio.create_task(batcher.embed(["t1"]))
        kept = asyncio.create_task(batcher.embed(["t2"]))
        await asyncio.sleep(0)
        gone.cancel()
        gate.set()
        assert ids((await kept).vectors) == [2]
        await first
        assert encoder.batches == [["t0"], ["t2"]]
    finally:
        await batcher.aclose()


async def test_aclose_fails_queued_and_later_requests(registry: CollectorRegistry) -> None:
    gate = threading.Event()
    encoder = RecordingEncoder(gate)
    batcher = await started(encoder, registry, max_batch_size=1, max_wait=0)
    first = asyncio.create_task(batcher.embed(["t0"]))
    await asyncio.to_thread(encoder.started.wait, 5)
    queued = asyncio.create_task(batcher.embed(["t1"]))
    await asyncio.sleep(0)
    closing = asyncio.create_task(batcher.aclose())
    await asyncio.sleep(0.01)
    gate.set()
    await closing
    for task in (first, queued):
        with pytest.raises(WorkerShuttingDown):
            await task
    with pytest.raises(WorkerShuttingDown):
        await batcher.embed(["t2"])


async def test_metrics_count_batches_items_and_waits(
    batcher: DynamicBatcher, registry: CollectorRegistry
) -> None:
    await asyncio.gather(*(batcher.embed([f"t{i}"]) for i in range(10)))

    batches = registry.get_sample_value("ragway_embedding_batch_size_count")
    assert batches is not None
    assert 1 <= batches < 10
    assert registry.get_sample_value("ragway_embedding_batch_size_sum") == 10
    assert registry.get_sample_value("ragway_embedding_items_total") == 10
    assert registry.get_sample_value("ragway_embedding_queue_wait_seconds_count") == 10


def text(n: int, tokens: int, prefix: str = "t") -> str:
    """A text with id `n` and `tokens` tokens (characters, for the fake encoder)."""
    head = f"{prefix}{n} "
    return head + "x" * (tokens - len(head))


def items(lengths: list[int]) -> list[Item]:
    loop = asyncio.get_running_loop()
    job = Job([text(i, n) for i, n in enumerate(lengths)], lengths, DIM, loop.create_future())
    return [Item(job, slot, n, 0.0) for slot, n in enumerate(lengths)]


async def test_pick_groups_by_length_around_the_oldest() -> None:
    window = items([100, 5, 6, 100, 7, 98])
    batch, rest = pick(window, max_tokens=1000)

    # The oldest input always goes; the short ones are not padded to 100 tokens.
    assert [i.tokens for i in batch] == [100, 100, 98]
    assert [i.tokens for i in rest] == [5, 6, 7]
    # The short ones go together in the next batch.
    batch, rest = pick(rest, max_tokens=1000)
    assert [i.tokens for i in batch] == [5, 6, 7]
    assert rest == []


async def test_pick_caps_padded_tokens() -> None:
    batch, rest = pick(items([100] * 10), max_tokens=350)
    assert len(batch) == 3
    assert len(rest) == 7
    # One input longer than the cap still goes, alone.
    batch, rest = pick(items([500, 500]), max_tokens=350)
    assert len(batch) == 1


async def test_long_and_short_inputs_go_in_separate_passes(registry: CollectorRegistry) -> None:
    encoder = RecordingEncoder()
    batcher = await started(encoder, registry, max_batch_size=32, max_wait=0.05)
    try:
        texts = [text(0, 200), *(text(i, 8) for i in range(1, 9)), text(9, 190)]
        result = await batcher.embed(texts)
        assert ids(result.vectors) == list(range(10))
        assert result.token_counts == [len(t) for t in texts]
        assert sorted(max(len(t) for t in batch) * len(batch) for batch in encoder.batches) == [
            64,
            400,
        ]
    finally:
        await batcher.aclose()


async def test_batches_respect_the_token_cap(registry: CollectorRegistry) -> None:
    encoder = RecordingEncoder()
    batcher = await started(
        encoder, registry, max_batch_size=32, max_wait=0.05, max_batch_tokens=1000
    )
    try:
        result = await batcher.embed([text(i, 200) for i in range(12)])
        assert ids(result.vectors) == list(range(12))
        assert encoder.sizes == [5, 5, 2]
        padded = registry.get_sample_value("ragway_embedding_batch_tokens_sum")
        assert padded == 12 * 200
    finally:
        await batcher.aclose()


async def test_query_does_not_wait_behind_a_bulk_pass(registry: CollectorRegistry) -> None:
    gate = threading.Event()
    encoder = RecordingEncoder(gate, gate_prefix="b")
    batcher = await started(encoder, registry, max_batch_size=4, max_wait=0)
    try:
        bulk = asyncio.create_task(batcher.embed([text(i, 200, "b") for i in range(40)]))
        await asyncio.to_thread(encoder.started.wait, 5)
        # The bulk lane is stuck in a pass with 36 more inputs queued behind it; a query (one
        # input) and a request marked interactive still get their answers.
        query = await asyncio.wait_for(batcher.embed(["t7"]), 5)
        marked = await asyncio.wait_for(batcher.embed(["t8", "t9"], "interactive"), 5)
        assert ids(query.vectors) == [7]
        assert ids(marked.vectors) == [8, 9]
        assert not bulk.done()
        gate.set()
        assert ids((await bulk).vectors) == list(range(40))
    finally:
        gate.set()
        await batcher.aclose()


async def test_bulk_priority_keeps_a_single_input_in_the_bulk_lane(
    registry: CollectorRegistry,
) -> None:
    gate = threading.Event()
    encoder = RecordingEncoder(gate, gate_prefix="b")
    batcher = await started(encoder, registry, max_batch_size=4, max_wait=0)
    try:
        first = asyncio.create_task(batcher.embed([text(0, 50, "b"), text(1, 50, "b")]))
        await asyncio.to_thread(encoder.started.wait, 5)
        demoted = asyncio.create_task(batcher.embed(["t5"], "bulk"))
        await asyncio.sleep(0.05)
        # Queued behind the stuck bulk pass, not answered on the interactive lane.
        assert not demoted.done()
        gate.set()
        assert ids((await demoted).vectors) == [5]
        await first
    finally:
        gate.set()
        await batcher.aclose()


async def test_bulk_passes_run_at_a_lower_os_priority(registry: CollectorRegistry) -> None:
    niceness: dict[str, int] = {}

    class NiceRecorder(RecordingEncoder):
        def encode(self, texts: Sequence[str]) -> Vectors:
            here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            niceness["bulk" if len(texts) > 1 else "interactive"] = here
            return super().encode(texts)

    batcher = await started(NiceRecorder(), registry, max_batch_size=4, max_wait=0)
    try:
        await batcher.embed(["t1"])
        await batcher.embed(["t2", "t3"])
    finally:
        await batcher.aclose()
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness == {"interactive": base, "bulk": min(base + BULK_NICE, 19)}
