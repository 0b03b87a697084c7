"""The shared Redis client against a real redis-server: keys are prefixed, calls are bounded
when Redis goes away, and no Redis configured means in-process state."""

from __future__ import annotations

import time

import pytest
from redis.exceptions import RedisError

from server.settings import StateSettings
from server.shared_state import open_shared_state
from tests.redis_server import RedisServer


async def test_without_redis_url_state_is_local() -> None:
    state = await open_shared_state(StateSettings())
    assert not state.shared
    assert state.redis is None
    assert not await state.ping()
    await state.aclose()


async def test_real_redis_round_trip_with_prefix(redis_server: RedisServer) -> None:
    state = await open_shared_state(StateSettings(redis_url=redis_server.url, key_prefix="test:"))
    try:
        assert state.shared
        assert await state.ping()
        key = state.key("limits", "rpm", "tenant-a")
        assert key == "test:limits:rpm:tenant-a"
        assert state.redis is not None
        await state.redis.set(key, "7")
        assert await state.redis.get(key) == b"7"
    finally:
        await state.aclose()


async def test_dead_redis_fails_fast_instead_of_hanging(redis_server: RedisServer) -> None:
    state = await open_shared_state(
        StateSettings(redis_url=redis_server.url, timeout=0.3, connect_timeout=0.3)
    )
    try:
        assert await state.ping()
        redis_server.kill()
        assert state.redis is not None
        started = time.monotonic()
        with pytest.raises((RedisError, OSError)):
            await state.redis.get(state.key("x"))
        # Generous: the point is "bounded", not a latency figure.
        assert time.monotonic() - started < 10
        assert not await state.ping()
    finally:
        await state.aclose()
