"""The embedded store: one SQLite file in ragway's data directory, so stored responses survive a
restart without any server. Calls run in a worker thread (stdlib sqlite3 blocks), one at a time
on one connection; SQLite's own busy timeout bounds waiting for another process's lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from server.errors import ResponseStoreUnavailable
from server.responses.store import StoredResponse

T = TypeVar("T")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS responses "
    "(id TEXT PRIMARY KEY, data BLOB NOT NULL, expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_at)",
)
_BUSY_TIMEOUT = 5.0
_MAX_IDS = 500  # SQLite's bound-parameter limit is far above any allowed chain depth


class SqliteResponseStore:
    def __init__(self, connection: sqlite3.Connection, clock: Callable[[], float] = time.time):
        self._db = connection
        self._lock = threading.Lock()
        self._clock = clock

    @classmethod
    async def open(cls, path: Path) -> SqliteResponseStore:
        """Open (creating) the file; a path that cannot be used stops the start, naming it."""

        def connect() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                db.execute(statement)
            db.commit()
            return db

        try:
            return cls(await asyncio.to_thread(connect))
        except (sqlite3.Error, OSError) as exc:
            raise RuntimeError(f"cannot open the responses store at {path}: {exc}") from exc

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work(self._db)

        try:
            return await asyncio.to_thread(locked)
        except sqlite3.Error as exc:
            raise ResponseStoreUnavailable(f"The responses store failed: {exc}") from exc

    async def put(self, response_id: str, encoded: bytes, ttl: float) -> None:
        now = self._clock()

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute("DELETE FROM responses WHERE expires_at <= ?", (now,))
                db.execute(
                    "INSERT OR REPLACE INTO responses (id, data, expires_at) VALUES (?, ?, ?)",
                    (response_id, encoded, now + ttl),
                )

        await self._run(write)

    async def get(self, response_id: str) -> StoredResponse | None:
        (found,) = await self.get_many([response_id])
        return found

    async def get_many(self, ids: Sequence[str]) -> list[StoredResponse | None]:
        wanted = list(dict.fromkeys(ids))[:_MAX_IDS]
        if not wanted:
            return []
        now = self._clock()
        marks = ",".join("?" * len(wanted))

        def read(db: sqlite3.Connection) -> dict[str, bytes]:
            rows = db.execute(
                f"SELECT id, data FROM responses WHERE expires_at > ? AND id IN ({marks})",
                (now, *wanted),
            ).fetchall()
            return {row[0]: row[1] for row in rows}

        found = await self._run(read)
        return [StoredResponse.decode(found[i]) if i in found else None for i in ids]

    async def delete(self, response_id: str) -> bool:
        now = self._clock()

        def remove(db: sqlite3.Connection) -> bool:
            with db:
                cursor = db.execute(
                    "DELETE FROM responses WHERE id = ? AND expires_at > ?", (response_id, now)
                )
            return cursor.rowcount > 0

        return await self._run(remove)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._db.close)
