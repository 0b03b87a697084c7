"""Finding `usage` in a worker's JSON body without parsing the whole body."""

from __future__ import annotations

import orjson
import pytest

from server.services.usage import usage_of

FLAT = {"prompt_tokens": 20, "total_tokens": 84, "completion_tokens": 64}
NESTED = {**FLAT, "prompt_tokens_details": {"cached_tokens": 16}}


@pytest.mark.parametrize("usage", [FLAT, NESTED, {**NESTED, "note": "a } and a { in text"}])
def test_usage_is_found_as_sent(usage: dict[str, object]) -> None:
    body = {
        "id": "chatcmpl-1",
        "choices": [{"message": {"content": 'tricky "usage":{"x": 1}'}}],
        "usage": usage,
        "prompt_logprobs": None,
        "kv_transfer_params": None,
    }
    assert usage_of(orjson.dumps(body)) == usage


@pytest.mark.parametrize("body", [b'{"id": "x"}', b'{"usage": null}', b'{"usage": {"a": 1'])
def test_no_usage_is_none(body: bytes) -> None:
    assert usage_of(body) is None
