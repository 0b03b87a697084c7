"""The benchmark suite's own parts, fast: the fake worker served in-process by uvicorn on a free
port, the load generator against it for a fraction of a second in both load shapes, and the
report (tables and plots) built from what it measured. The long runs are not part of the tests."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from benchmarks import report, scenarios
from benchmarks.fake_worker import FakeWorker, WorkerConfig
from benchmarks.identity import compare
from benchmarks.loadgen import Record, closed_loop, new_session, open_loop
from benchmarks.stats import summarize

TOKENS = 8


@pytest.fixture
async def worker_url() -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        FakeWorker(WorkerConfig(tokens=TOKENS, tokens_per_s=4000)),
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws="none",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    await task
    sock.close()


async def run(url: str, scenario: str, concurrency: int, seconds: float) -> list[Record]:
    load = {
        "chat": scenarios.chat("bench-chat", stream=False, max_tokens=TOKENS),
        "chat-stream": scenarios.chat("bench-chat", stream=True, max_tokens=TOKENS),
        "multi-turn": scenarios.multi_turn("bench-chat", stream=True, max_tokens=4),
        "embeddings": scenarios.embeddings("bench-embed", scenarios.sentences(8)),
    }[scenario]
    records: list[Record] = []
    async with new_session(concurrency) as session:
        await closed_loop(
            session,
            url,
            load,
            concurrency=concurrency,
            duration=seconds,
            max_requests=500,
            sink=records.append,
        )
    return records


async def test_closed_loop_records_are_sane(worker_url: str) -> None:
    records = await run(worker_url, "chat-stream", 4, 0.3)
    assert len(records) >= 4
    assert all(r.ok for r in records), records[0].error
    for r in records:
        assert r.tokens == TOKENS  # from usage
        assert r.chunks == TOKENS + 3  # role, tokens, finish, usage
        assert 0 < r.ttft <= r.e2e
        assert len(r.itl) == TOKENS - 1
        assert all(gap >= 0 for gap in r.itl)
    unary = await run(worker_url, "chat", 2, 0.2)
    assert unary
    assert all(r.ok and r.tokens == TOKENS and r.ttft <= r.e2e for r in unary)
    for scenario in ("multi-turn", "embeddings"):
        assert all(r.ok for r in await run(worker_url, scenario, 2, 0.1))


async def test_open_loop_and_errors(worker_url: str) -> None:
    records: list[Record] = []
    async with new_session(64) as session:
        load = scenarios.chat("bench-chat", stream=False, max_tokens=2)
        await open_loop(
            session,
            worker_url,
            load,
            rate=200,
            duration=0.3,
            max_requests=1000,
            sink=records.append,
        )
        missing = scenarios.chat("bench-chat", stream=False, max_tokens=2)
        await closed_loop(
            session,
            worker_url + "/nowhere",
            missing,
            concurrency=1,
            duration=1,
            max_requests=1,
            sink=records.append,
        )
    *arrivals, failed = records
    assert 10 <= len(arrivals) <= 200
    assert all(r.ok for r in arrivals)
    assert all(0 < r.start <= 0.3 for r in arrivals)  # arrival times, not completion times
    assert len({r.start for r in arrivals}) == len(arrivals)
    assert failed.status == 404
    assert failed.error is not None
    assert failed.error.startswith("HTTP 404")


async def test_report_from_measured_phases(worker_url: str, tmp_path: Path) -> None:
    phases = []
    for number in (1, 2):
        for scenario, level in (("chat", 1), ("chat", 2), ("chat-stream", 1), ("chat-stream", 2)):
            for target in ("direct", "ragway"):
                records = await run(worker_url, scenario, level, 0.05)
                phase = summarize(records, 0.05)
                phase.update(
                    target=target,
                    scenario=scenario,
                    concurrency=level,
                    rate=0.0,
                    round=number,
                    gateway_cpu_s=0.001 if target == "ragway" else None,
                    worker_cpu_s=0.01,
                    loadgen_cpu_s=0.01,
                )
                phases.append(phase)
    results = {
        "when": "now",
        "parameters": {},
        "phases": phases,
        "peak_rss_kib": {"ragway": 1024},
        "identity": {"ragway": {"stream": compare(b"abc", b"abc"), "json": compare(b"ab", b"ax")}},
    }
    text = report.markdown(results, tmp_path)
    assert "| **ragway** |" in text
    assert "differs from byte 1" in text
    assert (tmp_path / "overhead-latency-cdf.png").stat().st_size > 1000
    assert not math.isnan(phases[0]["e2e_p50"])


def test_paired_cpu_ratios_pair_each_round_with_its_baseline() -> None:
    """Round 2 ran on a machine twice as slow for both: the paired ratio stays 1.2 while the
    pooled one moves with how many requests each round happened to serve."""

    def phase(target: str, number: int, cpu: float, requests: int) -> dict[str, object]:
        return {
            "target": target,
            "scenario": "chat",
            "concurrency": 16,
            "rate": 0.0,
            "round": number,
            "gateway_cpu_s": cpu,
            "requests": requests,
            "errors": 0,
        }

    phases = [
        phase("ragway@base", 1, 1.0, 1000),
        phase("ragway", 1, 1.2, 1000),
        phase("ragway@base", 2, 2.0, 1000),
        phase("ragway", 2, 0.24, 100),
    ]
    text = report.paired_cpu(phases)
    # Pooled: 1.44 s over 1,100 requests against 3.0 s over 2,000.
    assert "| **ragway** | ragway@base | 1.200 [1.20–1.20] | 0.873 | 2 |" in text
