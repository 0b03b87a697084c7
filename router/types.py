"""Plain data the router works on."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class WorkerKind(StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"


@dataclass(frozen=True, slots=True)
class Backend:
    """A worker as configured: where it is and what it is for."""

    id: str
    url: str
    kind: WorkerKind
    # Models the configuration promises; empty means "learn them from the worker".
    declared_models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What a policy may know about a request: plain data, never a web framework object."""

    model: str
    # A stable key for session affinity (a header, or the request's `user`), if any.
    session_key: str | None = None
    # Chained block hashes of the prompt's text (see router.prefix), empty if not computed.
    prefix: tuple[int, ...] = ()
    # The worker that served this conversation's previous turn (its prefix cache holds it).
    preferred: str | None = None
