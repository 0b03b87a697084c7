"""The key file: one YAML entry per API key, holding the key's SHA-256 hash (never the key),
its scopes, limits and optional expiry.

```yaml
keys:
  - name: team-a                       # the tenant; logged and used as a metrics label
    sha256: 9f86d0...                  # hex SHA-256 of the key
    models: ["smollm2-*", "gpt-4o-mini"]
    knowledge_bases: {docs: read, "team-a-*": admin}
    limits: {rpm: 60, tpm: 20000, tokens_per_day: 1000000, concurrency: 4, max_tokens: 1024}
    expires: 2027-01-01T00:00:00Z
```

A bad file is refused whole, with a message naming the entry and the field.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from server.tenancy.principal import KbAccess, Limits, Principal, PriorityClass, tenant_salt

KEY_PREFIX = "sk-ragway-"
NonNegative = Annotated[int, Field(ge=0)]


class KeyFileError(ValueError):
    """The key file is missing or malformed; the message names the entry."""


class LimitsEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rpm: NonNegative | None = None
    tpm: NonNegative | None = None
    tokens_per_day: NonNegative | None = None
    concurrency: NonNegative | None = None
    max_tokens: NonNegative | None = None


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    admin: bool = False
    models: tuple[str, ...] = ("*",)
    knowledge_bases: dict[str, KbAccess] = Field(default_factory=dict)
    limits: LimitsEntry = LimitsEntry()
    expires: datetime | None = None
    # Share the engines' prefix cache with other tenants (no per-tenant cache_salt).
    shared_cache: bool = False
    # vLLM extension fields this key may send although it is not an admin key.
    allow_fields: tuple[str, ...] = ()
    priority: PriorityClass = PriorityClass.STANDARD

    @field_validator("expires")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def principal(self) -> Principal:
        return Principal(
            name=self.name,
            admin=self.admin,
            models=self.models,
            knowledge_bases=dict(self.knowledge_bases),
            limits=Limits(**self.limits.model_dump()),
            shared_cache=self.shared_cache,
            allow_fields=frozenset(self.allow_fields),
            priority=self.priority,
            cache_salt=None if self.shared_cache else tenant_salt(self.name),
        )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class _Known:
    digest: bytes
    principal: Principal
    expires: datetime | None


class KeyRing:
    """Looks a presented key up by its hash, then confirms it in constant time.

    A key found once is remembered by its text, so a tenant's next requests skip the hash
    (about a tenth of what auth costs a request). Only keys that matched an entry are kept:
    at most one per entry, whatever callers send. The ring is rebuilt when the key file
    changes, and expiry is checked on every lookup."""

    def __init__(self, entries: list[KeyEntry]):
        self._by_hash = {
            e.sha256: _Known(bytes.fromhex(e.sha256), e.principal(), e.expires) for e in entries
        }
        self._found: dict[str, _Known] = {}
        self.names = tuple(e.name for e in entries)

    def __len__(self) -> int:
        return len(self._by_hash)

    def lookup(self, key: str, now: datetime | None = None) -> Principal | None:
        known = self._found.get(key)
        if known is None:
            digest = hashlib.sha256(key.encode()).digest()
            known = self._by_hash.get(digest.hex())
            if known is None or not hmac.compare_digest(known.digest, digest):
                return None
            self._found[key] = known
        if known.expires is not None and (now or datetime.now(UTC)) >= known.expires:
            return None
        return known.principal


def _entry_name(raw: Any, index: int) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f"entry {index} ({name!r})" if isinstance(name, str) else f"entry {index}"


def parse_entries(document: Any, source: str) -> list[KeyEntry]:
    if document is None:
        document = {"keys": []}
    if not isinstance(document, dict) or not isinstance(document.get("keys", []), list):
        raise KeyFileError(f"{source}: expected a mapping with a `keys:` list")
    entries: list[KeyEntry] = []
    for index, raw in enumerate(document.get("keys") or []):
        try:
            entries.append(KeyEntry.model_validate(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "entry"
            raise KeyFileError(
                f"{source}: {_entry_name(raw, index)}: {where}: {first['msg']}"
            ) from None
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise KeyFileError(f"{source}: the name {entry.name!r} appears twice")
        seen.add(entry.name)
    return entries


def read_entries(path: Path) -> list[KeyEntry]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise KeyFileError(f"cannot read the key file {str(path)!r}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KeyFileError(f"{path}: not valid YAML: {exc}") from None
    return parse_entries(document, str(path))


def write_entries(path: Path, entries: list[KeyEntry]) -> None:
    """Replace the file atomically (a reader never sees half of it), readable by its owner."""
    document = {"keys": [e.model_dump(mode="json", exclude_defaults=True) for e in entries]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
