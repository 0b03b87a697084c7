"""Both stores of the Responses API behind one interface, against a real SQLite file and a real
redis-server: round trip, batch reads in order, delete, expiry, survival across a reopen, and a
dead Redis failing fast as ResponseStoreUnavailable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.errors import ResponseStoreUnavailable
from server.responses.redis_store import RedisResponseStore
from server.responses.sqlite_store import SqliteResponseStore
from server.responses.store import ResponseStore, StoredResponse
from server.settings import StateSettings
from server.shared_state import open_shared_state
from tests.redis_server import RedisServer


def stored(response_id: str, owner: str | None = "tenant-a") -> StoredResponse:
    return StoredResponse(
        id=response_id,
        owner=owner,
        model="gpt-4o-mini",
        worker="chat-0",
        created_at=1.0,
        chain=("resp_0",),
        input_items=[{"type": "message", "role": "user", "content": "hi"}],
        response={"id": response_id, "object": "response", "output": [{"type": "message"}]},
    )


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResponseStore]:
    if request.param == "sqlite":
        sqlite = await SqliteResponseStore.open(tmp_path / "data" / "responses.sqlite3")
        yield sqlite
        await sqlite.aclose()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    shared = await open_shared_state(StateSettings(redis_url=server.url, key_prefix="t:"))
    yield RedisResponseStore(shared)
    await shared.aclose()


async def test_round_trip_batch_and_delete(store: ResponseStore) -> None:
    one, two = stored("resp_1"), stored("resp_2", owner=None)
    await store.put(one.id, one.encode(), ttl=60)
    await store.put(two.id, two.encode(), ttl=60)
    assert await store.get("resp_1") == one
    assert await store.get("resp_missing") is None
    assert await store.get_many(["resp_2", "resp_missing", "resp_1"]) == [two, None, one]
    assert await store.get_many([]) == []
    assert await store.delete("resp_1") is True
    assert await store.delete("resp_1") is False
    assert await store.get("resp_1") is None
    assert (await store.get("resp_2")) == two


async def test_entries_expire(store: ResponseStore) -> None:
    one = stored("resp_short")
    await store.put(one.id, one.encode(), ttl=0.2)
    assert await store.get(one.id) == one
    deadline = time.monotonic() + 10
    while await store.get(one.id) is not None:
        assert time.monotonic() < deadline, "the entry never expired"
        await asyncio.sleep(0.05)
    assert await store.get_many([one.id]) == [None]
    assert await store.delete(one.id) is False


async def test_sqlite_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite3"
    first = await SqliteResponseStore.open(path)
    await first.put("resp_1", stored("resp_1").encode(), ttl=60)
    await first.aclose()
    again = await SqliteResponseStore.open(path)
    try:
        assert await again.get("resp_1") == stored("resp_1")
    finally:
        await again.aclose()


async def test_sqlite_unusable_path_stops_the_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RuntimeError, match="cannot open the responses store"):
        await SqliteResponseStore.open(blocker / "responses.sqlite3")


async def test_dead_redis_is_a_bounded_store_error(redis_server: RedisServer) -> None:
    settings = StateSettings(redis_url=redis_server.url, timeout=0.3, connect_timeout=0.3)
    shared = await open_shared_state(settings)
    store = RedisResponseStore(shared)
    try:
        await store.put("resp_1", stored("resp_1").encode(), ttl=60)
        redis_server.kill()
        started = time.monotonic()
        with pytest.raises(ResponseStoreUnavailable):
            await store.get("resp_1")
        with pytest.raises(ResponseStoreUnavailable):
            await store.put("resp_2", stored("resp_2").encode(), ttl=60)
        assert time.monotonic() - started < 10  # bounded, not a latency figure
    finally:
        await shared.aclose()
