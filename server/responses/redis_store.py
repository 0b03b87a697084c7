"""The shared store: stored responses in the gateway's one Redis, so every replica can continue
every conversation. Each entry is one key with Redis's own expiry; every call is bounded by the
client's socket timeouts (see server/shared_state.py) and, to be sure, by `asyncio.timeout`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.errors import ResponseStoreUnavailable
from server.responses.store import StoredResponse
from server.shared_state import SharedState

T = TypeVar("T")


class RedisResponseStore:
    def __init__(self, shared: SharedState):
        assert shared.redis is not None
        self._redis: Redis = shared.redis
        self._shared = shared
        # Socket timeouts bound each read; this bounds a call as a whole (connect included).
        self._limit = shared.settings.connect_timeout + 2 * shared.settings.timeout

    def _key(self, response_id: str) -> str:
        return self._shared.key("responses", response_id)

    async def _call(self, work: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._limit):
                return await work
        except (RedisError, OSError, TimeoutError) as exc:
            raise ResponseStoreUnavailable(
                f"The responses store (Redis) failed or did not answer in time: {exc or 'timeout'}"
            ) from exc

    async def put(self, response_id: str, encoded: bytes, ttl: float) -> None:
        await self._call(self._redis.set(self._key(response_id), encoded, px=int(ttl * 1000)))

    async def get(self, response_id: str) -> StoredResponse | None:
        raw = await self._call(self._redis.get(self._key(response_id)))
        return None if raw is None else StoredResponse.decode(raw)

    async def get_many(self, ids: Sequence[str]) -> list[StoredResponse | None]:
        if not ids:
            return []
        raws = await self._call(self._redis.mget([self._key(i) for i in ids]))
        return [None if raw is None else StoredResponse.decode(raw) for raw in raws]

    async def delete(self, response_id: str) -> bool:
        return bool(await self._call(self._redis.delete(self._key(response_id))))

    async def aclose(self) -> None:
        """The Redis client belongs to the shared state, which closes it."""
