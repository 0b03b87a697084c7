"""One SSE framing, on real processes: a gateway (`python -m server`) in front of a worker that
frames its stream with CRLF (benchmarks/fake_worker.py --line-ending crlf), paced so that
ragway's keep-alive pings fall between its events. The client's stream is CRLF throughout
(pings included), the usage chunk ragway asked for is gone, token metrics are counted, and the
RAG sources ride on the first chunk."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ragway.launch import write_gateway_config
from ragway.stack import answers, free_port

pytestmark = pytest.mark.stack

KB = "/v1/knowledge_bases"


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not answers(url):
        assert process.poll() is None, f"{url}: the process exited"
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.1)


@contextmanager
def _processes(tmp_path: Path) -> Iterator[str]:
    worker_port, port = free_port(), free_port()
    worker_argv = [sys.executable, "-m", "benchmarks.fake_worker", "--port", str(worker_port)]
    worker_argv += ["--line-ending", "crlf", "--tokens", "8", "--tokens-per-s", "5"]
    worker_url = f"http://127.0.0.1:{worker_port}"
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "workers": [
            {"name": "chat-0", "url": worker_url, "kind": "chat"},
            {"name": "embed-0", "url": worker_url, "kind": "embedding"},
        ],
        "stream": {"ping_interval": 0.3},
        "rag": {"data_dir": str(tmp_path / "data"), "retrieval_timeout": 30},
    }
    config = write_gateway_config(tmp_path / "gateway.yaml", settings)
    with (tmp_path / "logs.txt").open("wb") as log:
        worker = subprocess.Popen(worker_argv, stdout=log, stderr=subprocess.STDOUT)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "server"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RAGWAY_CONFIG_FILE": str(config)},
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(url + "/readyz", gateway)
        yield url
    finally:
        for process in (gateway, worker):
            process.terminate()
            process.wait(30)


def _completion_tokens(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ragway_completion_tokens_total"
    )


def test_a_crlf_worker_stream_is_handled_end_to_end(tmp_path: Path) -> None:
    with _processes(tmp_path) as url, httpx.Client(base_url=url, timeout=120) as client:
        assert client.post(KB, json={"name": "docs", "embedding_model": "bench-embed"}).is_success
        doc = {"id": "zephyr", "text": "The Zephyr router's product code is QX-4471-ZT."}
        assert client.post(f"{KB}/docs/documents", json=doc).is_success
        body = {
            "model": "bench-chat",
            "stream": True,
            "messages": [{"role": "user", "content": "What is the Zephyr's code?"}],
            "rag": {"knowledge_base": "docs"},
        }
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            raw = b"".join(response.iter_raw())
        # CRLF throughout: no bare LF or CR anywhere, ragway's pings included.
        assert b"\n" not in raw.replace(b"\r\n", b"")
        assert b"\r" not in raw.replace(b"\r\n", b"")
        events = raw.split(b"\r\n\r\n")
        assert events[-1] == b""
        assert any(e.startswith(b":") for e in events), "no keep-alive ping was sent"
        data = [e.removeprefix(b"data: ") for e in events if e.startswith(b"data: ")]
        assert data[-1] == b"[DONE]"
        first = orjson.loads(data[0])
        assert [s["document_id"] for s in first["sources"]] == ["zephyr"]
        assert all(b'"choices":[]' not in d for d in data)  # the forced usage chunk is gone
        assert _completion_tokens(url) == 8
