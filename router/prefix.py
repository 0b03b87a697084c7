"""Prompt prefixes as chains of block hashes, and a bounded index of which worker saw which.

vLLM's prefix cache reuses KV blocks of a prompt's leading tokens. ragway cannot see tokens
cheaply, so it hashes the prompt text in fixed-size character blocks, each hash chained to the
one before it: two prompts share their first k block hashes exactly when they share their
first k blocks of text. A worker that recently served a prompt with the same leading blocks
probably still holds them in its cache.

The index is an LRU over block hashes with a hard entry limit (and an optional TTL), so its
memory is bounded however many distinct prompts pass through (production-stack #687).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

BlockHashes = tuple[int, ...]


def block_hashes(text: str, block_chars: int, max_blocks: int = 256) -> BlockHashes:
    """Chained hashes of the complete `block_chars`-sized blocks of `text` (a trailing partial
    block is left out: it is the part most likely to differ)."""
    hashes: list[int] = []
    previous = 0
    for start in range(0, min(len(text) // block_chars, max_blocks) * block_chars, block_chars):
        previous = hash((previous, text[start : start + block_chars]))
        hashes.append(previous)
    return tuple(hashes)


class PrefixIndex:
    def __init__(
        self,
        max_entries: int,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._ttl = ttl
        self._clock = clock
        # block hash -> (workers that served it, most recent last; when last seen)
        self._entries: OrderedDict[int, tuple[tuple[str, ...], float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, blocks: BlockHashes, worker_ids: Sequence[str]) -> dict[str, int]:
        """For each worker, how many leading blocks of `blocks` it has served."""
        matched = dict.fromkeys(worker_ids, 0)
        alive = set(worker_ids)
        now = self._clock()
        for depth, block in enumerate(blocks):
            entry = self._entries.get(block)
            if entry is None or (self._ttl is not None and now - entry[1] > self._ttl):
                break
            alive &= set(entry[0])
            if not alive:
                break
            for worker_id in alive:
                matched[worker_id] = depth + 1
        return matched

    def record(self, blocks: BlockHashes, worker_id: str) -> None:
        """`worker_id` now holds these blocks (it is about to serve this prompt)."""
        now = self._clock()
        for block in blocks:
            workers, _ = self._entries.pop(block, ((), now))
            if worker_id not in workers:
                workers = (*workers, worker_id)[-4:]  # a prefix lives on a few workers at most
            self._entries[block] = (workers, now)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget_worker(self, worker_id: str) -> None:
        """Drop a removed worker from every entry (entries left empty go too)."""
        for block in list(self._entries):
            workers, seen = self._entries[block]
            if worker_id in workers:
                kept = tuple(w for w in workers if w != worker_id)
                if kept:
                    self._entries[block] = (kept, seen)
                else:
                    del self._entries[block]
