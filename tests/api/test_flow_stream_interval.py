"""A band's `stream_interval` (flow.<band>.stream_interval): with flow control on, a batch-band
stream asks vLLM for one chunk per N tokens; other bands, unstreamed requests, a client's own
value and flow control off leave the body as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from server.services.embeddings import TokenDecoder
from server.settings import FlowSettings
from tests.api.tenancy_support import auth
from tests.api.test_flow import _chat, gateway

BATCH_INTERVAL = FlowSettings().batch.stream_interval
# With usage asked for, ragway adds its fields to the client's bytes instead of re-encoding.
USAGE: dict[str, Any] = {"stream_options": {"include_usage": True}}


async def _sent(tmp_path: Path, decoder: TokenDecoder, key: str, flow: dict[str, Any],
                path: str = "/v1/chat/completions", **extra: Any) -> dict[str, Any]:  # fmt: skip
    """The body the worker got for one request of `key`'s caller."""
    async with gateway(tmp_path, decoder, **flow) as (h, gate):
        gate.release()
        if path == "/v1/chat/completions":
            reply = await _chat(h, key, "hello", **extra)
        else:
            body = {"model": "tiny-chat", "prompt": "hello", **extra}
            reply = await h.client.post(path, json=body, headers=auth(key))
        assert reply.status_code == 200, reply.text
        sent: dict[str, Any] = orjson.loads(h.chat.raw_bodies[-1])
        return sent


def test_the_batch_band_coalesces_by_default_and_no_other_band_does() -> None:
    flow = FlowSettings()
    assert BATCH_INTERVAL is not None
    assert BATCH_INTERVAL > 1
    assert flow.high.stream_interval is None
    assert flow.standard.stream_interval is None


async def test_a_batch_stream_asks_for_the_bands_interval(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    sent = await _sent(tmp_path, token_decoder, "bulk", {}, stream=True, **USAGE)
    assert sent["stream_interval"] == BATCH_INTERVAL
    assert sent["priority"] == 1  # added in the same rewrite as the engine priority
    assert sent["messages"] == [{"role": "user", "content": "hello"}]


async def test_a_batch_completion_stream_asks_for_it_too(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    sent = await _sent(tmp_path, token_decoder, "bulk", {}, "/v1/completions", stream=True)
    assert sent["stream_interval"] == BATCH_INTERVAL


@pytest.mark.parametrize(
    ("key", "flow", "extra"),
    [
        ("interactive", {}, {"stream": True, **USAGE}),  # high band: every token
        ("team", {}, {"stream": True}),  # standard band: every token
        ("bulk", {}, {}),  # not streamed: nothing to coalesce
        ("bulk", {"enabled": False}, {"stream": True}),  # flow control off
        ("bulk", {"batch": {"stream_interval": None}}, {"stream": True}),  # turned off
    ],
)
async def test_no_interval_is_added(
    tmp_path: Path,
    token_decoder: TokenDecoder,
    key: str,
    flow: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    sent = await _sent(tmp_path, token_decoder, key, flow, **extra)
    assert "stream_interval" not in sent


@pytest.mark.parametrize("own", [1, 4, 64])
async def test_a_clients_own_interval_passes_through(
    tmp_path: Path, token_decoder: TokenDecoder, own: int
) -> None:
    sent = await _sent(
        tmp_path, token_decoder, "bulk", {}, stream=True, stream_interval=own, **USAGE
    )
    assert sent["stream_interval"] == own


async def test_a_band_set_in_settings_applies_to_its_streams(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    flow = {"high": {"stream_interval": 3}, "engine_priority": False}
    sent = await _sent(tmp_path, token_decoder, "interactive", flow, stream=True, **USAGE)
    assert sent["stream_interval"] == 3
    assert "priority" not in sent  # the interval alone, added to the client's bytes


async def test_a_body_the_gateway_reencodes_carries_the_interval(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    """A stream without `include_usage` is re-encoded (ragway asks for usage): the interval
    goes into that encoding rather than a second rewrite."""
    sent = await _sent(tmp_path, token_decoder, "bulk", {}, stream=True)
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["stream_interval"] == BATCH_INTERVAL
