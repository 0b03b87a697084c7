"""One lane of the batcher: a queue of inputs, the collector task that cuts it into batches,
and the one model thread the batches run on.

A batch is cut from a window of the oldest `max_batch_size` live inputs. It always holds the
oldest input (so nothing waits forever), then grows by the inputs closest to it in length,
while the padded size (inputs x the longest) stays within `max_batch_tokens` and no input is
padded to more than twice its length (below `SHORT_TOKENS`, padding is cheaper than a pass).
Short inputs are therefore not padded to a long one's length, and the cap bounds how long one
pass runs. What the window leaves goes back to the head of the queue and forms the next batch
at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from server.errors import RagwayError
from workers.embedding.encoder import Encoder, Vectors
from workers.embedding.errors import EncoderFailed, WorkerShuttingDown
from workers.embedding.metrics import EmbeddingMetrics

logger = logging.getLogger(__name__)

# A batch stops growing before an input would be padded to more than twice its length...
MIN_FILL = 0.5
# ...unless the longest input is this short: padding a few tokens costs less than a pass.
SHORT_TOKENS = 32


@dataclass(frozen=True, slots=True)
class Embedded:
    """One caller's results, in the order of its inputs."""

    vectors: Vectors
    token_counts: list[int]


class Job:
    """One caller's inputs and the array its results land in, batch by batch."""

    __slots__ = ("future", "remaining", "texts", "token_counts", "vectors")

    def __init__(
        self,
        texts: Sequence[str],
        token_counts: list[int],
        dimension: int,
        future: asyncio.Future[Embedded],
    ):
        self.texts = texts
        self.token_counts = token_counts
        self.vectors: Vectors = np.empty((len(texts), dimension), dtype=np.float32)
        self.remaining = len(texts)
        self.future = future


class Item(NamedTuple):
    job: Job
    slot: int  # which of the job's inputs
    tokens: int
    enqueued_at: float


def pick(window: Sequence[Item], max_tokens: int) -> tuple[list[Item], list[Item]]:
    """(batch, rest) out of `window`, oldest first; both keep the window's order."""
    order = sorted(range(len(window)), key=lambda i: window[i].tokens)
    lo = hi = order.index(0)
    shortest = longest = window[0].tokens
    while hi - lo + 1 < len(order):
        left = window[order[lo - 1]].tokens if lo > 0 else None
        right = window[order[hi + 1]].tokens if hi + 1 < len(order) else None
        # The neighbour (in length order) closer to the batch's lengths joins next.
        take_left = right is None or (left is not None and longest - left <= right - shortest)
        tokens = left if take_left else right
        assert tokens is not None
        top, bottom = max(longest, tokens), min(shortest, tokens)
        if (hi - lo + 2) * top > max_tokens or (top > SHORT_TOKENS and bottom < MIN_FILL * top):
            break
        if take_left:
            lo, shortest = lo - 1, tokens
        else:
            hi, longest = hi + 1, tokens
    chosen = set(order[lo : hi + 1])
    batch = [item for i, item in enumerate(window) if i in chosen]
    rest = [item for i, item in enumerate(window) if i not in chosen]
    return batch, rest


def forward(encoder: Encoder, texts: list[str]) -> Vectors:
    """One forward pass, on the model thread."""
    vectors = np.asarray(encoder.encode(texts), dtype=np.float32)
    if vectors.shape != (len(texts), encoder.dimension):
        raise ValueError(f"encoder returned vectors of shape {vectors.shape} for {len(texts)}")
    return vectors


def lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by `nice` over the one it has (Linux: niceness is
    per thread, and threads it starts later, such as ONNX Runtime's intra-op pool, inherit
    it). Relative: a worker started under `nice` keeps its bulk lane below its own priority,
    where setting the value outright would raise the lane above it (or fail, unprivileged)."""
    if nice > 0:
        thread = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(current + nice, 19))


def fail(items: Sequence[Item], error: Callable[[], RagwayError]) -> None:
    # A fresh exception per caller: one instance raised in many tasks would share a traceback.
    for item in items:
        if not item.job.future.done():
            item.job.future.set_exception(error())


class Lane:
    """Nothing runs until `start()` (from the running event loop); `aclose()` stops the
    collector, fails whatever is still queued with 503, and joins the model thread."""

    def __init__(
        self,
        name: str,
        encoder: Encoder,
        metrics: EmbeddingMetrics,
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        max_wait: float,
        nice: int = 0,
    ):
        self.name = name
        self._nice = nice
        self.queue: deque[Item] = deque()
        self._encoder = encoder
        self._metrics = metrics
        self._max_batch_size = max_batch_size
        self._max_batch_tokens = max_batch_tokens
        self._max_wait = max_wait
        # Set when the queue goes from empty to not, and when it holds a full batch.
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"the {self.name} lane was already started")
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"embed-{self.name}",
            initializer=lower_priority,
            initargs=(self._nice,),
        )
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"ragway-embedding-{self.name}"
        )

    async def run_in_thread(self, texts: list[str]) -> Vectors:
        """A forward pass on this lane's model thread, outside the queue (the warm-up)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, forward, self._encoder, texts
        )

    def put(self, items: Sequence[Item]) -> None:
        was_empty = not self.queue
        self.queue.extend(items)
        if was_empty or len(self.queue) >= self._max_batch_size:
            self._wakeup.set()

    async def aclose(self) -> None:
        task, executor = self._task, self._executor
        self._executor = None
        if task is not None:
            task.cancel()
            # `wait`, not `await task`: the task's CancelledError must not look like ours.
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # Mark it retrieved: `_run` has logged it.
        self.fail_queued(lambda: WorkerShuttingDown("The embedding worker is shutting down."))
        if executor is not None:
            # Joins a forward pass that is still running: seconds at worst, so off the loop.
            await asyncio.to_thread(executor.shutdown, wait=True)

    def fail_queued(self, error: Callable[[], RagwayError]) -> None:
        queued = list(self.queue)
        self.queue.clear()
        fail(queued, error)

    async def _run(self) -> None:
        try:
            while True:
                batch = await self._collect()
                if batch:
                    await self._dispatch(batch)
        except Exception:
            # A bug here must not leave callers waiting forever; `running` turns False.
            logger.exception("embedding batcher's %s lane stopped", self.name)
            self.fail_queued(lambda: WorkerShuttingDown("The embedding batcher stopped."))
            raise

    async def _collect(self) -> list[Item]:
        """The next batch, cut from the oldest `max_batch_size` live inputs."""
        while not self.queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        if len(self.queue) < self._max_batch_size and self._max_wait > 0:
            loop = asyncio.get_running_loop()
            # Measured from the oldest input: inputs that queued during the last forward pass
            # have waited already and go at once.
            left = self.queue[0].enqueued_at + self._max_wait - loop.time()
            if left > 0:
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(left):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
        window: list[Item] = []
        while self.queue and len(window) < self._max_batch_size:
            item = self.queue.popleft()
            # Done already: its caller went away, or another of its batches failed.
            if not item.job.future.done():
                window.append(item)
        if not window:
            return []
        batch, rest = pick(window, self._max_batch_tokens)
        self.queue.extendleft(reversed(rest))
        return batch

    async def _dispatch(self, batch: list[Item]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for item in batch:
            self._metrics.queue_wait.observe(now - item.enqueued_at)
        self._metrics.batch_size.observe(len(batch))
        self._metrics.batch_tokens.observe(len(batch) * max(item.tokens for item in batch))
        texts = [item.job.texts[item.slot] for item in batch]
        try:
            with self._metrics.forward.time():
                vectors = await loop.run_in_executor(self._executor, forward, self._encoder, texts)
        except asyncio.CancelledError:
            fail(batch, lambda: WorkerShuttingDown("The embedding worker is shutting down."))
            raise
        except Exception:
            # Only this batch's callers fail; the collector goes on with the next batch.
            logger.exception("embedding forward pass failed (%d inputs)", len(batch))
            fail(batch, lambda: EncoderFailed("The embedding model failed on this batch."))
            return
        self._metrics.items.inc(len(batch))
        for row, item in enumerate(batch):
            job = item.job
            if job.future.done():
                continue
            job.vectors[item.slot] = vectors[row]
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(Embedded(job.vectors, job.token_counts))
