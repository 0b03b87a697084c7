"""A gateway with auth on, in front of the fake workers, and keys to call it with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from server.app import create_app
from server.services.embeddings import TokenDecoder
from server.tenancy.keys import KeyEntry, hash_key, write_entries
from tests.api.conftest import Harness, settings_for_fakes
from tests.fakes.worker import FakeWorker, HostRouter
from tests.serving import served

KEYS: dict[str, dict[str, Any]] = {
    "root": {"admin": True},
    "reader": {"models": ["tiny-chat"], "knowledge_bases": {"docs": "read"}},
    "alias-only": {"models": ["gpt-4o-mini"]},
    "writer": {"knowledge_bases": {"docs": "write", "team-*": "admin"}},
    "limited": {"limits": {"rpm": 3}},
    "tokens": {"limits": {"tpm": 1000, "tokens_per_day": 100_000}},
    "daily": {"limits": {"tokens_per_day": 5}},
    "capped": {"limits": {"max_tokens": 16}},
    "shared": {"shared_cache": True},
    "scheduler": {"allow_fields": ["priority"]},
}


def key_of(name: str) -> str:
    return f"sk-test-{name}"


def auth(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key_of(name)}"}


def write_key_file(path: Path, keys: dict[str, dict[str, Any]] | None = None) -> Path:
    entries = [
        KeyEntry.model_validate({"name": n, "sha256": hash_key(key_of(n)), **spec})
        for n, spec in (keys or KEYS).items()
    ]
    write_entries(path, entries)
    return path


@asynccontextmanager
async def auth_gateway(
    tmp_path: Path, decoder: TokenDecoder, **overrides: Any
) -> AsyncIterator[Harness]:
    keys = overrides.pop("keys_file", None) or write_key_file(tmp_path / "keys.yaml")
    chat = FakeWorker(models=["tiny-chat"])
    embed = FakeWorker(models=["tiny-embed"], kind="embedding")
    transport = HostRouter()
    transport.add("chat.test", chat)
    transport.add("embed.test", embed)
    registry = CollectorRegistry()
    settings = settings_for_fakes(
        auth={"keys_file": str(keys), **overrides.pop("auth", {})},
        rag={"data_dir": str(tmp_path / "data")},
        **overrides,
    )
    app = create_app(settings, upstream_transport=transport, registry=registry,
                     token_decoder=decoder)  # fmt: skip
    async with served(app) as client:
        yield Harness(client, chat, embed, transport, registry)
