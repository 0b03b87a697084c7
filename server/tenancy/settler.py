"""Settlements for Redis-backed limits, sent in batches.

Every admitted request ends with a settlement: its real token count replaces the estimate, and
its concurrency slot is freed. One Redis round trip each would double the Redis work of a
request; instead they queue here and one script call every `FLUSH_INTERVAL` settles them all.
A slot is therefore freed up to that much later, and tokens land in the window that long after
the answer. When Redis fails, the batch is dropped (logged): slots then expire with their TTL.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

log = logging.getLogger("ragway.tenancy")

FLUSH_INTERVAL = 0.05
MAX_BATCH = 500


class Settler:
    def __init__(self, script: AsyncScript, timeout: float):
        self._script = script
        self._timeout = timeout
        self._keys: list[str] = []
        self._args: list[Any] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, keys: tuple[str, str, str], delta: int, tpm_w: int, day_w: int, rid: str) -> None:
        self._keys += keys
        self._args += (delta, tpm_w, day_w, rid)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="ragway-settler")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()

    async def flush(self) -> None:
        while self._keys:
            keys, self._keys = self._keys[: 3 * MAX_BATCH], self._keys[3 * MAX_BATCH :]
            args, self._args = self._args[: 4 * MAX_BATCH], self._args[4 * MAX_BATCH :]
            try:
                async with asyncio.timeout(self._timeout):
                    await self._script(keys=keys, args=args)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("redis: %d settlements dropped: %r", len(keys) // 3, exc)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()
