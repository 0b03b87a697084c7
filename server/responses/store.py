"""What a stored response is, and the one interface its two stores (SQLite, Redis) share.

A stored response keeps what a later turn needs to rebuild the conversation without asking
anyone else: this turn's own input items, the response object as the client saw it (its
`output` items included), the ids of every earlier response in its chain (oldest first), the
worker that served it (the next turn prefers it: its prefix cache holds the conversation), and
its owner (the tenant; another tenant's lookups find nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    owner: str | None
    model: str
    worker: str | None
    created_at: float
    chain: tuple[str, ...]
    input_items: list[dict[str, Any]]
    response: dict[str, Any]

    @property
    def output(self) -> list[dict[str, Any]]:
        output = self.response.get("output")
        if not isinstance(output, list):
            return []
        return [item for item in output if isinstance(item, dict)]

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | str) -> StoredResponse:
        data = orjson.loads(raw)
        data["chain"] = tuple(data["chain"])
        return cls(**data)


class ResponseStore(Protocol):
    """Every method is bounded in time; a store that fails raises ResponseStoreUnavailable.
    Expired entries are never returned."""

    async def put(self, response_id: str, encoded: bytes, ttl: float) -> None: ...

    async def get(self, response_id: str) -> StoredResponse | None: ...

    async def get_many(self, ids: Sequence[str]) -> list[StoredResponse | None]: ...

    async def delete(self, response_id: str) -> bool:
        """Whether it was there."""
        ...

    async def aclose(self) -> None: ...
