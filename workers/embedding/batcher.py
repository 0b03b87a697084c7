"""Dynamic batching with two lanes: concurrent callers' inputs are coalesced into forward
passes, and a query never waits behind a large ingest batch.

- The **interactive** lane takes requests with a single input (a search query), or any request
  its caller marks interactive (the gateway does, for RAG's query embedding). It never holds
  a batch open on purpose: an input that arrives while the lane is idle goes at once, and
  inputs that arrive during a pass form the next batch.
- The **bulk** lane takes everything else (ingest batches, multi-input requests) and may hold
  a non-full batch open for `max_wait` to gather more.

Each lane has its own collector task and its own model thread (and, with ONNX Runtime, its own
session), so an interactive pass runs beside a bulk one rather than after it; the bulk thread
runs at a lower OS priority, so that on a shared core the interactive pass gets most of it.
Within a lane, batches are cut by length under a padded-token cap (`lane.pick`). Inputs are
tokenised when they arrive, to know their lengths; that runs in a thread for all but small
requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

import numpy as np

from workers.embedding.encoder import Encoder
from workers.embedding.errors import EncoderFailed, QueueFull, WorkerShuttingDown
from workers.embedding.lane import Embedded, Item, Job, Lane
from workers.embedding.metrics import EmbeddingMetrics

Priority = Literal["interactive", "bulk"]

# The bulk lane's model thread runs at this nice value, so that where the two lanes share a
# core (a worker given one CPU) the scheduler gives the interactive pass most of it: on one
# core, a query beside an ingest pass otherwise takes twice its idle time.
BULK_NICE = 10

# Requests with fewer characters than this are tokenised on the event loop (microseconds).
_INLINE_TOKENIZE_CHARS = 2048

__all__ = ["DynamicBatcher", "Embedded", "Priority"]


class DynamicBatcher:
    """Owns the two lanes and the queue limit they share.

    Nothing runs until `start()` (called from the running event loop); `aclose()` stops both
    lanes, fails whatever is still queued with 503, and joins the model threads.
    """

    def __init__(
        self,
        encoder: Encoder,
        metrics: EmbeddingMetrics,
        *,
        max_batch_size: int = 32,
        max_batch_tokens: int = 1024,
        max_wait: float = 0.002,
        max_queue: int = 4096,
    ):
        if max_batch_size < 1 or max_batch_tokens < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError(
                "need max_batch_size >= 1, max_batch_tokens >= 1, max_queue >= 1, max_wait >= 0"
            )
        self._encoder = encoder
        self._max_queue = max_queue
        sizes = {"max_batch_size": max_batch_size, "max_batch_tokens": max_batch_tokens}
        self._interactive = Lane("interactive", encoder, metrics, max_wait=0.0, **sizes)
        self._bulk = Lane("bulk", encoder, metrics, max_wait=max_wait, nice=BULK_NICE, **sizes)
        self._started = False

    @property
    def running(self) -> bool:
        return self._interactive.running and self._bulk.running

    @property
    def queued(self) -> int:
        return len(self._interactive.queue) + len(self._bulk.queue)

    def start(self) -> None:
        if self._started:
            raise RuntimeError("the batcher was already started")
        self._started = True
        self._interactive.start()
        self._bulk.start()

    async def warm_up(self) -> None:
        """One pass on each lane's thread, so the first requests find sessions and caches
        ready (ONNX Runtime builds a session per thread on first use)."""
        for lane in (self._interactive, self._bulk):
            await lane.run_in_thread(["warm up"])

    async def aclose(self) -> None:
        await asyncio.gather(self._interactive.aclose(), self._bulk.aclose())

    async def embed(self, texts: Sequence[str], priority: Priority | None = None) -> Embedded:
        """Embed `texts`; raises `QueueFull` (503) when they do not fit in the queue.

        `priority` None: interactive for a single input, bulk otherwise.
        """
        if not self.running:
            raise WorkerShuttingDown("The embedding batcher is not running.")
        if not texts:
            return Embedded(np.empty((0, self._encoder.dimension), dtype=np.float32), [])
        self._check_room(len(texts))
        counts = await self._count_tokens(texts)
        # Checked again: others may have queued while the tokenizer ran in its thread.
        self._check_room(len(texts))
        loop = asyncio.get_running_loop()
        job = Job(texts, counts, self._encoder.dimension, loop.create_future())
        now = loop.time()
        interactive = priority == "interactive" or (priority is None and len(texts) == 1)
        lane = self._interactive if interactive else self._bulk
        lane.put([Item(job, slot, counts[slot], now) for slot in range(len(texts))])
        # A caller that goes away cancels the future; the collector then skips its inputs.
        return await job.future

    def _check_room(self, count: int) -> None:
        if self.queued + count > self._max_queue:
            raise QueueFull(
                f"The embedding worker is overloaded ({self.queued} inputs queued, "
                f"limit {self._max_queue}); retry later."
            )

    async def _count_tokens(self, texts: Sequence[str]) -> list[int]:
        try:
            if sum(len(text) for text in texts) < _INLINE_TOKENIZE_CHARS:
                counts = self._encoder.count_tokens(texts)
            else:
                counts = await asyncio.to_thread(self._encoder.count_tokens, texts)
        except Exception as exc:
            raise EncoderFailed("The embedding model's tokenizer failed on this input.") from exc
        if len(counts) != len(texts):
            raise EncoderFailed(f"The tokenizer returned {len(counts)} counts for {len(texts)}.")
        return counts
