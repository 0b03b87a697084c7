"""Who a request runs as: a key's name (the tenant), what it may touch, and its limits.

Services receive a `Principal`, never headers. Flow control (queueing, fairness) will read
`priority` and `fairness_id` from here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase


class KbAccess(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {KbAccess.READ: 1, KbAccess.WRITE: 2, KbAccess.ADMIN: 3}


class PriorityClass(StrEnum):
    """Bands for flow control: interactive traffic before batch."""

    HIGH = "high"
    STANDARD = "standard"
    BATCH = "batch"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-key limits; None means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    concurrency: int | None = None
    max_tokens: int | None = None
    # Whether admission has anything to count; worked out once, asked on every request.
    counted: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counted = any(
            v is not None for v in (self.rpm, self.tpm, self.tokens_per_day, self.concurrency)
        )
        object.__setattr__(self, "counted", counted)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # the key's name: the tenant, a bounded metrics label
    admin: bool = False
    models: tuple[str, ...] = ("*",)  # glob patterns over the names a client may ask for
    knowledge_bases: dict[str, KbAccess] = field(default_factory=dict)  # name or glob -> access
    limits: Limits = Limits()
    shared_cache: bool = False
    allow_fields: frozenset[str] = frozenset()
    priority: PriorityClass = PriorityClass.STANDARD
    authenticated: bool = True
    # vLLM's `cache_salt` for this tenant's requests: prefix-cache blocks are only shared
    # between requests with the same salt. None: no salt (anonymous, or a shared-cache key).
    cache_salt: str | None = None

    @property
    def fairness_id(self) -> str:
        """What flow control shares capacity fairly between: one tenant."""
        return self.name

    def may_use_model(self, model: str) -> bool:
        if self.admin or model in self.models or "*" in self.models:
            return True  # the common cases, without fnmatch's regex machinery
        return any(fnmatchcase(model, pattern) for pattern in self.models)

    def kb_access(self, knowledge_base: str) -> KbAccess | None:
        if self.admin:
            return KbAccess.ADMIN
        best: KbAccess | None = None
        for pattern, access in self.knowledge_bases.items():
            if fnmatchcase(knowledge_base, pattern) and (best is None or access.rank > best.rank):
                best = access
        return best

    def may(self, knowledge_base: str, needed: KbAccess) -> bool:
        held = self.kb_access(knowledge_base)
        return held is not None and held.rank >= needed.rank


def tenant_salt(name: str) -> str:
    return hashlib.sha256(b"ragway-tenant:" + name.encode()).hexdigest()[:32]


ANONYMOUS = Principal(name="anonymous", admin=True, shared_cache=True, authenticated=False)
