"""A band's `stream_interval` on the real stack: with flow control on (the defaults), a
batch-class stream reaches the client from vLLM in chunks of several tokens, its first token
at once, with the same text, finish and usage as the token-by-token stream an interactive key
gets for the same greedy request.

The two keys are different tenants, so each has its own prefix-cache salt: neither request
reuses the other's cached prompt, and both decode alone, one after the other."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from ragway.cli import CHAT_MODEL
from ragway.stack import serve_gateway
from server.settings import FlowSettings
from server.tenancy.keys import KeyEntry, hash_key, write_entries
from tests.integration.conftest import RunningStack

TENANTS = {"bulk": "batch", "people": "high"}
TOKENS = 48
DEADLINE = 300.0  # generous: a loaded 2-core CI machine

pytestmark = pytest.mark.stack


@dataclass
class Streamed:
    text: str = ""
    deltas: list[int] = field(default_factory=list)  # tokens per chunk that carried any
    finish: str | None = None
    usage: dict[str, Any] | None = None  # the closing usage chunk's
    done: bool = False


@pytest.fixture(scope="module")
def gateway(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    run_dir = tmp_path_factory.mktemp("flow-interval")
    keys = run_dir / "keys.yaml"
    write_entries(keys, [
        KeyEntry.model_validate({"name": n, "sha256": hash_key(f"sk-si-{n}"), "priority": p})
        for n, p in TENANTS.items()
    ])  # fmt: skip
    config: dict[str, object] = {
        "workers": [{"name": "real", "url": stack.chat_worker, "kind": "chat"}],
        "auth": {"keys_file": str(keys)},
        "rag": {"data_dir": str(run_dir / "data")},
    }
    with serve_gateway(config, run_dir) as base_url:
        yield base_url


def _stream(base_url: str, tenant: str) -> Streamed:
    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "Tell me about the sea."}],
        "max_tokens": TOKENS,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    got, counted = Streamed(), 0
    headers = {"authorization": f"Bearer sk-si-{tenant}"}
    with httpx.stream("POST", base_url + "/chat/completions", json=body, headers=headers,
                      timeout=DEADLINE) as reply:  # fmt: skip
        assert reply.status_code == 200, reply.read()
        for line in reply.iter_lines():
            if line == "data: [DONE]":
                got.done = True
            if not line.startswith("data: {"):
                continue
            chunk = orjson.loads(line[6:])
            assert "error" not in chunk, chunk
            tokens = chunk["usage"]["completion_tokens"]
            if not chunk["choices"]:
                got.usage = chunk["usage"]
                continue
            choice = chunk["choices"][0]
            got.text += choice["delta"].get("content") or ""
            got.finish = choice.get("finish_reason") or got.finish
            if tokens > counted:
                got.deltas.append(tokens - counted)
                counted = tokens
    return got


def test_a_batch_stream_comes_coalesced_and_an_interactive_one_token_by_token(
    gateway: str,
) -> None:
    interval = FlowSettings().batch.stream_interval
    assert interval is not None
    batch = _stream(gateway, "bulk")
    interactive = _stream(gateway, "people")
    for got in (batch, interactive):
        assert got.done
        assert got.finish == "length"
        assert got.usage is not None
        assert got.usage["completion_tokens"] == TOKENS
        assert sum(got.deltas) == TOKENS
    assert interactive.deltas == [1] * TOKENS
    # The first token alone (it sets the time to first token), then `interval` at a time.
    assert batch.deltas[0] == 1
    assert max(batch.deltas) == interval
    assert len(batch.deltas) < TOKENS
    assert batch.text
    assert batch.text == interactive.text
