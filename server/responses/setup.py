"""Choosing the responses store from settings: Redis when the gateway has one (shared by every
replica), else the embedded SQLite file."""

from __future__ import annotations

from server.responses.redis_store import RedisResponseStore
from server.responses.sqlite_store import SqliteResponseStore
from server.responses.store import ResponseStore
from server.settings import RagwaySettings
from server.shared_state import SharedState


async def open_response_store(settings: RagwaySettings, shared: SharedState) -> ResponseStore:
    if shared.redis is not None:
        return RedisResponseStore(shared)
    path = settings.responses.sqlite_path or settings.rag.data_dir / "responses.sqlite3"
    return await SqliteResponseStore.open(path.expanduser())
