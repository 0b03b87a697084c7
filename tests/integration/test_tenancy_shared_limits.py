"""Two gateway processes sharing one real redis-server enforce one combined limit, and a dead
Redis gets the configured fail mode: no hang, no other error. No vLLM here: both gateways front
the benchmarks' fake worker process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks import targets
from benchmarks.procs import Proc, running
from server.tenancy.keys import KeyEntry, hash_key, write_entries
from tests.redis_server import RedisServer

KEY = "sk-test-shared"
HEADERS = {"authorization": f"Bearer {KEY}"}
RPM = 7
CHAT = {"model": "bench-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Proc]:
    procs: list[Proc] = []
    with running(procs):
        procs.append(targets.fake_worker(tmp_path, None, tokens=4, tokens_per_s=1e6,
                                         delay_ms=0))  # fmt: skip
        yield procs[0]


def _gateway(tmp_path: Path, name: str, worker: Proc, redis_url: str, mode: str) -> Proc:
    keys = tmp_path / "keys.yaml"
    if not keys.exists():
        entry = KeyEntry.model_validate(
            {"name": "shared", "sha256": hash_key(KEY), "limits": {"rpm": RPM}}
        )
        write_entries(keys, [entry])
    return targets.ragway(
        tmp_path / name, worker.base_url, None, kinds=("chat",), name=name,
        auth={"keys_file": str(keys), "limits_fail_mode": mode},
        state={"redis_url": redis_url, "timeout": 0.3, "connect_timeout": 0.3},
    )  # fmt: skip


def _away_from_minute_edge() -> None:
    left = 60 - time.time() % 60
    if left < 15:
        time.sleep(left + 0.2)


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_two_gateway_processes_share_one_limit_and_survive_redis(
    tmp_path: Path, worker: Proc, redis_server: RedisServer, mode: str
) -> None:
    procs: list[Proc] = []
    with running(procs):
        for name in ("gw-a", "gw-b"):
            procs.append(_gateway(tmp_path, name, worker, redis_server.url, mode))
        urls = [p.base_url + "/chat/completions" for p in procs]
        _away_from_minute_edge()
        statuses = [
            httpx.post(urls[i % 2], json=CHAT, headers=HEADERS, timeout=30).status_code
            for i in range(3 * RPM)
        ]
        assert statuses.count(200) == RPM, statuses
        assert set(statuses) == {200, 429}
        redis_server.kill()
        for url in urls:
            started = time.monotonic()
            after = httpx.post(url, json=CHAT, headers=HEADERS, timeout=30)
            assert time.monotonic() - started < 5  # bounded: no hang on a dead Redis
            if mode == "open":
                assert after.status_code == 200  # counted in this process instead
            else:
                assert after.status_code == 503
                assert after.json()["error"]["code"] == "rate_limits_unavailable"
