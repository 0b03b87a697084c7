"""Bounded Chroma, on real processes: a gateway (`python -m server`) whose `rag.chroma_url`
points at a TCP listener that accepts and never answers. Knowledge-base calls answer 503 within
the store timeout, /healthz stays fast, /readyz reports the store degraded; once a real Chroma
(`chroma run`) answers on that address, calls succeed without restarting the gateway."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ragway.launch import write_gateway_config
from ragway.stack import answers, free_port
from tests.integration.rag_support import chroma_server

pytestmark = pytest.mark.stack

STORE_TIMEOUT = 5.0


class HungListener:
    """Accepts connections on a free port and never answers them, until closed."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self._held.append(self._listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._listener.close()


@contextmanager
def _gateway(tmp_path: Path, chroma_port: int) -> Iterator[str]:
    port, worker_port = free_port(), free_port()
    settings = {
        "host": "127.0.0.1",
        "port": port,
        # The fake worker as the embedding worker: creating a knowledge base checks its model.
        "workers": [
            {"name": "embed-0", "url": f"http://127.0.0.1:{worker_port}", "kind": "embedding"}
        ],
        "rag": {
            "chroma_url": f"http://127.0.0.1:{chroma_port}",
            "store_timeout": STORE_TIMEOUT,
            "default_embedding_model": "bench-embed",
        },
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fake_worker", "--port", str(worker_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = write_gateway_config(tmp_path / "gateway.yaml", settings)
    with (tmp_path / "gateway.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RAGWAY_CONFIG_FILE": str(config)},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not answers(url + "/readyz"):
            assert process.poll() is None, (tmp_path / "gateway.log").read_text()
            assert time.monotonic() < deadline, "the gateway never answered /healthz"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        worker.terminate()
        process.wait(30)
        worker.wait(30)


def _timed(call: str, url: str) -> tuple[int, float]:
    started = time.monotonic()
    if call == "list":
        response = httpx.get(url + "/v1/knowledge_bases", timeout=60)
    else:
        response = httpx.post(url + "/v1/knowledge_bases", json={"name": "docs"}, timeout=60)
    return response.status_code, time.monotonic() - started


def test_a_hung_chroma_is_bounded_and_recovers_without_restart(tmp_path: Path) -> None:
    hung = HungListener()
    try:
        with _gateway(tmp_path, hung.port) as url:
            _assert_bounded(url)
            hung.close()  # a real Chroma now answers on the same address
            with chroma_server(tmp_path / "chroma", tmp_path / "chroma.log", port=hung.port):
                _assert_recovers(url)
    finally:
        hung.close()


def _assert_bounded(url: str) -> None:
    with ThreadPoolExecutor(12) as pool:
        calls = [pool.submit(_timed, c, url) for c in ["create", "list"] * 6]
        time.sleep(0.3)
        assert httpx.get(url + "/healthz", timeout=STORE_TIMEOUT).status_code == 200
        # Liveness answered while every hung call was still waiting on Chroma: nothing it
        # needs is held by them (timing it in seconds would flake on a loaded machine).
        assert not any(c.done() for c in calls)
        results = [c.result() for c in calls]
    # Generous: each call is bounded by the store timeout, plus a loaded machine's slack.
    assert all(status == 503 and took < STORE_TIMEOUT + 5 for status, took in results), results
    store = httpx.get(url + "/readyz", timeout=5).json()["vector_store"]
    assert store["state"] == "degraded"


def _assert_recovers(url: str) -> None:
    deadline = time.monotonic() + 60
    while (status := _timed("create", url)[0]) != 200:
        assert status == 503, status
        assert time.monotonic() < deadline, "calls never succeeded against the real Chroma"
        time.sleep(0.5)
    listed = httpx.get(url + "/v1/knowledge_bases", timeout=30).json()
    assert [kb["name"] for kb in listed["data"]] == ["docs"]
    assert httpx.get(url + "/readyz", timeout=5).json()["vector_store"]["state"] == "ok"
