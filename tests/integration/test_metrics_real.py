"""/metrics after one chat and one streaming request on the real stack, read from a gateway of
its own (so other tests' traffic does not blur the counts), and its JSON access log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ragway.stack import serve_gateway
from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.stack

MODEL = "smollm2-135m-instruct"
MESSAGES = [{"role": "user", "content": "List some colours."}]
STREAMED = 48  # tokens of the streamed answer (ignore_eos): seconds of decoding, many chunks


@pytest.fixture(scope="module")
def metered(
    stack: RunningStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    run_dir = tmp_path_factory.mktemp("metered")
    settings: dict[str, object] = {
        "workers": [{"name": "vllm-0", "url": stack.chat_worker}],
        "health": {"interval": 1.0, "metrics_interval": 0.5},
    }
    with serve_gateway(settings, run_dir, name="metered") as base_url:
        yield base_url, run_dir


def samples(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(base_url.removesuffix("/v1") + "/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_match_the_responses(metered: tuple[str, Path]) -> None:
    base_url, run_dir = metered
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 8, "ignore_eos": True}
    plain = httpx.post(base_url + "/chat/completions", json=body, timeout=120).json()
    started = time.perf_counter()
    first_at = None
    chunks = []
    streamed = {**body, "max_tokens": STREAMED, "stream": True}
    with httpx.stream("POST", base_url + "/chat/completions", json=streamed, timeout=120) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: {"):
                first_at = first_at or time.perf_counter() - started
                chunks.append(json.loads(line[6:]))
    took = time.perf_counter() - started
    assert all(c["choices"] for c in chunks), "the usage chunk ragway asked for leaked through"
    m = (("model", MODEL),)
    route = ("route", "/v1/chat/completions")
    # The gateway counts a request as its answer ends, and the worker gauges come from a scrape
    # of the worker that succeeded after this gateway started: wait for both.
    deadline = time.monotonic() + 120
    while True:
        got = samples(base_url)
        if (
            got.get(("ragway_request_duration_seconds_count", (m[0], route))) == 2
            and ("ragway_worker_queue", (("worker", "vllm-0"),)) in got
        ):
            break
        assert time.monotonic() < deadline, "the two requests and a worker scrape never showed"
        time.sleep(0.2)

    assert got[("ragway_requests_total", (m[0], route, ("status", "200")))] == 2
    assert got[("ragway_request_duration_seconds_count", (m[0], route))] == 2
    prompt = plain["usage"]["prompt_tokens"]
    assert got[("ragway_prompt_tokens_total", m)] == 2 * prompt  # the same prompt twice
    assert got[("ragway_completion_tokens_total", m)] == 8 + STREAMED
    assert got[("ragway_time_to_first_token_seconds_count", m)] == 1
    ttft = got[("ragway_time_to_first_token_seconds_sum", m)]
    assert first_at is not None
    assert 0 < ttft <= first_at, (ttft, first_at)  # measured at the gateway, so never later
    # One gap per batch of events the gateway relays after the first. A CPU worker whose API
    # server falls behind merges tokens into fewer chunks (one loaded run: 2 batches for 12
    # tokens), so the count is bounded by what the client got, not fixed.
    assert 1 <= got[("ragway_inter_token_latency_seconds_count", m)] <= len(chunks) - 1
    assert got[("ragway_inter_token_latency_seconds_sum", m)] < took
    assert got[("ragway_worker_up", (("kind", "chat"), ("worker", "vllm-0")))] == 1
    assert ("ragway_worker_kv_cache_usage_ratio", (("worker", "vllm-0"),)) in got
    assert ("ragway_worker_queue", (("worker", "vllm-0"),)) in got
    assert not any(name == "ragway_upstream_errors_total" for name, _ in got)

    log = (run_dir / "logs").glob("gateway-*.log")
    lines = [json.loads(line) for path in log for line in path.read_text().splitlines()
             if line.startswith("{")]  # fmt: skip
    chat = [line for line in lines if line["path"] == "/v1/chat/completions"]
    assert len(chat) == 2
    assert {line["worker"] for line in chat} == {"vllm-0"}
    assert chat[1]["completion_tokens"] == STREAMED
    assert chat[1]["ttft_s"] is not None
    assert all(len(line["request_id"]) == 32 for line in chat)
