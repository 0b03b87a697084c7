"""Rate limits and quotas: in process, and shared by two gateways through a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.observability.record import RequestRecord
from server.services.embeddings import TokenDecoder
from server.tenancy.gate import _charged
from server.tenancy.limiter import Admission
from server.tenancy.principal import Limits, Principal
from server.tenancy.windows import LocalWindows, Verdict
from tests.api.conftest import Harness
from tests.api.tenancy_support import auth, auth_gateway, write_key_file
from tests.redis_server import RedisServer

CHAT = {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}]}


async def away_from_minute_edge() -> None:
    """Minute windows are aligned to the clock: start a counting test well inside one."""
    if time.time() % 60 > 55:
        await asyncio.sleep(60 - time.time() % 60 + 0.1)


@pytest.fixture
async def gw(tmp_path: Path, token_decoder: TokenDecoder) -> AsyncIterator[Harness]:
    async with auth_gateway(tmp_path, token_decoder) as harness:
        yield harness


async def test_rpm_limit_answers_429_with_openai_headers(gw: Harness) -> None:
    await away_from_minute_edge()
    remaining = []
    for _ in range(3):
        ok = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth("limited"))
        assert ok.status_code == 200
        assert ok.headers["x-ratelimit-limit-requests"] == "3"
        assert ok.headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(ok.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    over = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth("limited"))
    assert over.status_code == 429
    error = over.json()["error"]
    assert (error["code"], error["type"]) == ("rate_limit_exceeded", "requests")
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert 0 < int(over.headers["retry-after-ms"]) <= 60_000
    assert over.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(gw.chat.received) == 3
    reason = {"tenant": "limited", "reason": "rpm"}
    assert gw.metric("ragway_tenant_rejections_total", reason) == 1
    # Other tenants are not affected.
    assert (await gw.client.get("/v1/models", headers=auth("root"))).status_code == 200


async def test_tokens_are_charged_from_real_usage(gw: Harness) -> None:
    await away_from_minute_edge()
    first = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth("tokens"))
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "1000"
    # Admission reserved an estimate; the fake worker's usage (3 + 1) replaced it at the end.
    assert gw.metric("ragway_tenant_tokens_total", {"tenant": "tokens"}) == 4
    stream = await gw.client.post("/v1/chat/completions", json={**CHAT, "stream": True},
                                  headers=auth("tokens"))  # fmt: skip
    assert stream.status_code == 200
    assert "x-ratelimit-remaining-tokens" in stream.headers
    assert gw.metric("ragway_tenant_tokens_total", {"tenant": "tokens"}) == 9  # + 3 + 2
    body = b'{"model":"tiny-chat","messages":[{"role":"user","content":"hi"}]}'
    third = await gw.client.post("/v1/chat/completions", content=body, headers=auth("tokens"))
    estimate = len(body) // 4
    assert int(third.headers["x-ratelimit-remaining-tokens"]) == 1000 - 9 - estimate


async def test_daily_budget_is_insufficient_quota(gw: Harness) -> None:
    first = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth("daily"))
    assert first.status_code == 200
    over = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth("daily"))
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "insufficient_quota"
    assert int(over.headers["retry-after"]) >= 1


def test_concurrency_slots_are_released() -> None:
    windows = LocalWindows()
    keys = ("r", "t", "d", "c")
    limits = (-1, -1, -1, 1)
    first = windows.admit(keys, limits, 0, "a", 1_000)
    assert first.reason == ""
    assert windows.admit(keys, limits, 0, "b", 1_001).reason == "concurrency"
    windows.settle(keys[1:], 0, first, "a")
    assert windows.admit(keys, limits, 0, "b", 1_002).reason == ""


def test_a_cut_stream_is_charged_for_what_was_sent() -> None:
    admission = Admission(Principal("t", limits=Limits(tpm=100)), "r", 30,
                          Verdict("", 0, 1, 1, 30, 1, 0, 0), shared=False)  # fmt: skip
    record = RequestRecord("r", "POST", "/v1/chat/completions")
    assert _charged(record, admission) == 0  # nothing generated: the estimate is refunded
    record.chunk_sent()
    record.chunk_sent()
    record.chunk_sent()
    assert _charged(record, admission) == 33  # cut before usage: estimate + a token a chunk
    record.usage({"prompt_tokens": 12, "completion_tokens": 3})
    assert _charged(record, admission) == 15


async def test_two_gateways_share_one_limit_through_redis(
    tmp_path: Path, token_decoder: TokenDecoder, redis_server: RedisServer
) -> None:
    keys = write_key_file(tmp_path / "keys.yaml", {"team": {"limits": {"rpm": 5}}})
    state = {"redis_url": redis_server.url}
    await away_from_minute_edge()
    async with (
        auth_gateway(tmp_path / "a", token_decoder, keys_file=keys, state=state) as a,
        auth_gateway(tmp_path / "b", token_decoder, keys_file=keys, state=state) as b,
    ):
        statuses = []
        for i in range(12):
            gateway = (a, b)[i % 2]
            response = await gateway.client.post("/v1/chat/completions", json=CHAT,
                                                 headers=auth("team"))  # fmt: skip
            statuses.append(response.status_code)
        assert statuses.count(200) == 5
        assert statuses.count(429) == 7
        assert len(a.chat.received) + len(b.chat.received) == 5


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_redis_killed_applies_the_fail_mode(
    tmp_path: Path, token_decoder: TokenDecoder, redis_server: RedisServer, mode: str
) -> None:
    keys = write_key_file(tmp_path / "keys.yaml", {"team": {"limits": {"rpm": 100}}})
    async with auth_gateway(tmp_path, token_decoder, keys_file=keys,
                            state={"redis_url": redis_server.url, "timeout": 0.3},
                            auth={"limits_fail_mode": mode}) as gw:  # fmt: skip
        ok = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth("team"))
        assert ok.status_code == 200
        redis_server.kill()
        started = time.monotonic()
        after = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth("team"))
        assert time.monotonic() - started < 3
        if mode == "open":
            assert after.status_code == 200
            assert after.headers["x-ratelimit-limit-requests"] == "100"
        else:
            assert after.status_code == 503
            assert after.json()["error"]["code"] == "rate_limits_unavailable"
        assert gw.metric("ragway_tenant_limit_fallbacks_total", {"mode": mode}) == 1


async def test_real_tokens_settle_in_redis_for_every_gateway(
    tmp_path: Path, token_decoder: TokenDecoder, redis_server: RedisServer
) -> None:
    keys = write_key_file(tmp_path / "keys.yaml",
                          {"team": {"limits": {"tpm": 1000, "concurrency": 1}}})  # fmt: skip
    state = {"redis_url": redis_server.url}
    body = b'{"model":"tiny-chat","messages":[{"role":"user","content":"hi"}]}'
    estimate = len(body) // 4
    await away_from_minute_edge()
    async with (
        auth_gateway(tmp_path / "a", token_decoder, keys_file=keys, state=state) as a,
        auth_gateway(tmp_path / "b", token_decoder, keys_file=keys, state=state) as b,
    ):
        first = await a.client.post("/v1/chat/completions", content=body, headers=auth("team"))
        assert int(first.headers["x-ratelimit-remaining-tokens"]) == 1000 - estimate
        # The settlement (real usage 3 + 1, the slot freed) reaches Redis with the next batch.
        for _ in range(100):
            second = await b.client.post("/v1/chat/completions", content=body,
                                         headers=auth("team"))  # fmt: skip
            if second.status_code == 200:
                break
            assert second.status_code == 429  # the concurrency slot is not free yet
            await asyncio.sleep(0.02)
        assert int(second.headers["x-ratelimit-remaining-tokens"]) == 1000 - 4 - estimate
