"""Dynamic batching: concurrent callers' inputs are coalesced into one forward pass.

One collector task takes inputs off a bounded queue, up to `max_batch_size` at a time. Once the
oldest queued input has waited `max_wait`, or the queue holds a full batch, the batch goes to
the model at once. The forward pass runs in one dedicated thread, never on the event loop; while
it runs, new inputs queue up, so under load the next batch is full without any waiting.
A request with more inputs than `max_batch_size` is spread over several passes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from server.errors import RagwayError
from workers.embedding.encoder import Encoder, Vectors
from workers.embedding.errors import EncoderFailed, QueueFull, WorkerShuttingDown
from workers.embedding.metrics import EmbeddingMetrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Embedded:
    """One caller's results, in the order of its inputs."""

    vectors: Vectors
    token_counts: list[int]


class _Job:
    """One caller's inputs and the arrays its results land in, batch by batch."""

    __slots__ = ("future", "remaining", "texts", "token_counts", "vectors")

    def __init__(self, texts: Sequence[str], dimension: int, future: asyncio.Future[Embedded]):
        self.texts = texts
        self.vectors: Vectors = np.empty((len(texts), dimension), dtype=np.float32)
        self.token_counts = [0] * len(texts)
        self.remaining = len(texts)
        self.future = future


class _Item(NamedTuple):
    job: _Job
    slot: int  # which of the job's inputs
    enqueued_at: float


def _forward(encoder: Encoder, texts: list[str]) -> tuple[Vectors, list[int]]:
    """One forward pass, on the model thread."""
    vectors = np.asarray(encoder.encode(texts), dtype=np.float32)
    counts = encoder.count_tokens(texts)
    if vectors.shape != (len(texts), encoder.dimension) or len(counts) != len(texts):
        raise ValueError(
            f"encoder returned vectors of shape {vectors.shape} and {len(counts)} token counts "
            f"for {len(texts)} texts"
        )
    return vectors, counts


class DynamicBatcher:
    """Owns the input queue, the collector task and the model thread.

    Nothing runs until `start()` (called from the running event loop); `aclose()` stops the
    collector, fails whatever is still queued with 503, and joins the model thread.
    """

    def __init__(
        self,
        encoder: Encoder,
        metrics: EmbeddingMetrics,
        *,
        max_batch_size: int = 32,
        max_wait: float = 0.002,
        max_queue: int = 4096,
    ):
        if max_batch_size < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("need max_batch_size >= 1, max_queue >= 1 and max_wait >= 0")
        self._encoder = encoder
        self._metrics = metrics
        self._max_batch_size = max_batch_size
        self._max_wait = max_wait
        self._max_queue = max_queue
        self._queue: deque[_Item] = deque()
        # Set when the queue goes from empty to not, and when it holds a full batch.
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the batcher was already started")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragway-embed")
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="ragway-embedding-batcher"
        )

    async def aclose(self) -> None:
        task, executor = self._task, self._executor
        self._executor = None
        if task is not None:
            task.cancel()
            # `wait`, not `await task`: the task's CancelledError must not look like ours.
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # Mark it retrieved: `_run` has logged it.
        self._fail_queued(lambda: WorkerShuttingDown("The embedding worker is shutting down."))
        if executor is not None:
            # Joins a forward pass that is still running: seconds at worst, so off the loop.
            await asyncio.to_thread(executor.shutdown, wait=True)

    async def embed(self, texts: Sequence[str]) -> Embedded:
        """Embed `texts`; raises `QueueFull` (503) when they do not fit in the queue."""
        if not self.running:
            raise WorkerShuttingDown("The embedding batcher is not running.")
        if not texts:
            return Embedded(np.empty((0, self._encoder.dimension), dtype=np.float32), [])
        if len(self._queue) + len(texts) > self._max_queue:
            raise QueueFull(
                f"The embedding worker is overloaded ({len(self._queue)} inputs queued, "
                f"limit {self._max_queue}); retry later."
            )
        loop = asyncio.get_running_loop()
        job = _Job(texts, self._encoder.dimension, loop.create_future())
        was_empty = not self._queue
        now = loop.time()
        self._queue.extend(_Item(job, slot, now) for slot in range(len(texts)))
        if was_empty or len(self._queue) >= self._max_batch_size:
            self._wakeup.set()
        # A caller that goes away cancels the future; the collector then skips its inputs.
        return await job.future

    async def _run(self) -> None:
        try:
            while True:
                batch = await self._collect()
                if batch:
                    await self._dispatch(batch)
        except Exception:
            # A bug here must not leave callers waiting forever; `running` turns False.
            logger.exception("embedding batcher stopped")
            self._fail_queued(lambda: WorkerShuttingDown("The embedding batcher stopped."))
            raise

    async def _collect(self) -> list[_Item]:
        """The next batch: at most `max_batch_size` live inputs, in arrival order."""
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        if len(self._queue) < self._max_batch_size:
            loop = asyncio.get_running_loop()
            # Measured from the oldest input: inputs that queued during the last forward pass
            # have waited already and go at once.
            left = self._queue[0].enqueued_at + self._max_wait - loop.time()
            if left > 0:
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(left):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
        batch: list[_Item] = []
        while self._queue and len(batch) < self._max_batch_size:
            item = self._queue.popleft()
            # Done already: its caller went away, or another of its batches failed.
            if not item.job.future.done():
                batch.append(item)
        return batch

    async def _dispatch(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for item in batch:
            self._metrics.queue_wait.observe(now - item.enqueued_at)
        self._metrics.batch_size.observe(len(batch))
        texts = [item.job.texts[item.slot] for item in batch]
        try:
            with self._metrics.forward.time():
                vectors, counts = await loop.run_in_executor(
                    self._executor, _forward, self._encoder, texts
                )
        except asyncio.CancelledError:
            _fail(batch, lambda: WorkerShuttingDown("The embedding worker is shutting down."))
            raise
        except Exception:
            # Only this batch's callers fail; the collector goes on with the next batch.
            logger.exception("embedding forward pass failed (%d inputs)", len(batch))
            _fail(batch, lambda: EncoderFailed("The embedding model failed on this batch."))
            return
        self._metrics.items.inc(len(batch))
        for row, item in enumerate(batch):
            job = item.job
            if job.future.done():
                continue
            job.vectors[item.slot] = vectors[row]
            job.token_counts[item.slot] = counts[row]
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(Embedded(job.vectors, job.token_counts))

    def _fail_queued(self, error: Callable[[], RagwayError]) -> None:
        queued = list(self._queue)
        self._queue.clear()
        _fail(queued, error)


def _fail(items: Sequence[_Item], error: Callable[[], RagwayError]) -> None:
    # A fresh exception per caller: one instance raised in many tasks would share a traceback.
    for item in items:
        if not item.job.future.done():
            item.job.future.set_exception(error())
