"""One upstream mechanism, on real processes: two embedding workers (`python -m
workers.embedding`, MiniLM) behind a gateway, steady /v1/embeddings load, then `kill -9` of one
worker: no request fails (each fails over before answering), and the dead worker is ejected,
out of rotation, within 2 s. No vLLM is needed."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ragway.launch import embedding_spec, gateway_spec, write_gateway_config
from ragway.stack import Stack, free_port
from ragway.weights import embedding_model_dir

pytestmark = pytest.mark.stack

MODEL = "all-minilm-l6-v2"
LOAD_THREADS = 4


def _worker_state(url: str, worker: str) -> dict[str, object]:
    ready = httpx.get(url + "/readyz", timeout=10).json()
    state: dict[str, object] = next(w for w in ready["workers"] if w["id"] == worker)
    return state


def test_kill_9_of_an_embedding_worker_fails_no_request(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    gateway_port = free_port()
    settings = {
        "host": "127.0.0.1",
        "port": gateway_port,
        "workers": [
            {"name": f"embed-{i}", "url": f"http://127.0.0.1:{p}", "kind": "embedding"}
            for i, p in enumerate(ports)
        ],
        # Probes are slow on purpose: only the request path can take the worker out in time.
        "health": {"interval": 30, "timeout": 5},
        "routing": {"embedding_policy": "round_robin"},
        "retries": {"max_attempts": 3, "backoff": 0.01},
        "rag": {"data_dir": str(tmp_path / "data")},
    }
    config = write_gateway_config(tmp_path / "gateway.yaml", settings)
    stack = Stack(tmp_path / "logs", sys.stdout)
    try:
        for port in ports:
            stack.start(embedding_spec(embedding_model_dir(), MODEL, host="127.0.0.1", port=port))
        stack.start(gateway_spec(config, host="127.0.0.1", port=gateway_port))
        stack.wait_ready(600)
        url = f"http://127.0.0.1:{gateway_port}"
        # The gateway is ready with one worker up. A worker whose first probe came before it
        # listened is only probed again after `health.interval` (30 s here): wait for both, or
        # the kill would leave no worker at all.
        _wait(lambda: all(_worker_state(url, f"embed-{i}")["up"] for i in range(2)), "both up")
        _load_then_kill(stack, url)
    finally:
        stack.stop()


def _load_then_kill(stack: Stack, url: str) -> None:
    outcomes: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                body = {"model": MODEL, "input": ["steady load", "on two workers"]}
                outcomes.append(client.post("/v1/embeddings", json=body).status_code)

    threads = [threading.Thread(target=load) for _ in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    try:
        _wait(lambda: len(outcomes) >= 20, "steady load")
        victim = stack._children[0].process  # embed-0
        os.killpg(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        _wait(lambda: bool(_worker_state(url, "embed-0")["ejected"]), "the ejection", 30)
        out_after = time.monotonic() - killed
        count_at_kill = len(outcomes)
        _wait(lambda: len(outcomes) >= count_at_kill + 40, "load after the kill")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    print(f"requests: {len(outcomes)}, out of rotation {out_after:.3f} s after kill -9")
    assert [s for s in outcomes if s != 200] == []
    assert out_after < 2.0


def _wait(condition: object, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
