"""Versioned ingest on real processes: a gateway (`python -m server`) over a real Chroma server
(`chroma run`) and a fake embedding worker (benchmarks/fake_worker.py).

1. 50 rounds of two concurrent ingests of one document id with different texts: afterwards the
   document is exactly one of the two versions (one content hash, positions 0..n-1, nothing
   else stored).
2. A knowledge base's fail mode survives a gateway restart: after the restart Chroma goes away,
   and a RAG chat on a `fail_mode: closed` knowledge base is still answered 503.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from ragway.launch import write_gateway_config
from ragway.stack import answers, free_port
from tests.integration.rag_support import chroma_server

pytestmark = pytest.mark.stack

KB = "/v1/knowledge_bases"
TEXT_A = " ".join(f"Alpha sentence number {i} about gateways." for i in range(40))
TEXT_B = " ".join(f"Bravo line {i} on vector stores and chunking." for i in range(70))
HASHES = {hashlib.sha256(t.encode()).hexdigest() for t in (TEXT_A, TEXT_B)}


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while not answers(url):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.2)


@contextmanager
def _fake_worker(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fake_worker", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url + "/health", process, log)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def _gateway(tmp_path: Path, worker: str, chroma: str) -> Iterator[str]:
    port = free_port()
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "workers": [
            {"name": "chat-0", "url": worker, "kind": "chat"},
            {"name": "embed-0", "url": worker, "kind": "embedding"},
        ],
        "rag": {"chroma_url": chroma, "store_timeout": 5, "retrieval_timeout": 10},
    }
    config = write_gateway_config(tmp_path / f"gateway-{port}.yaml", settings)
    log = tmp_path / f"gateway-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RAGWAY_CONFIG_FILE": str(config)},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url + "/readyz", process, log)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def test_concurrent_ingests_and_fail_mode_across_restarts(tmp_path: Path) -> None:
    with _fake_worker(tmp_path) as worker, ExitStack() as chroma:
        chroma_url = chroma.enter_context(
            chroma_server(tmp_path / "chroma", tmp_path / "chroma.log")
        )
        with _gateway(tmp_path, worker, chroma_url) as url:
            _fifty_rounds(url)
        with _gateway(tmp_path, worker, chroma_url) as url:
            # The restarted gateway lists the records in the background, unasked: its first
            # successful store call turns the store's state to ok.
            deadline = time.monotonic() + 60
            while httpx.get(url + "/readyz", timeout=10).json()["vector_store"]["state"] != "ok":
                assert time.monotonic() < deadline, "the records were never read"
                time.sleep(0.2)
            chroma.close()  # Chroma goes away
            _assert_closed_still_closed(url)


def _fifty_rounds(url: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as client, ThreadPoolExecutor(2) as pool:
        kb = {
            "name": "docs",
            "chunk_tokens": 32,
            "fail_mode": "closed",
            "embedding_model": "bench-embed",
        }
        created = client.post(KB, json=kb)
        assert created.status_code == 200, created.text
        winners = set()
        for round_ in range(50):
            texts = (TEXT_A, TEXT_B) if round_ % 2 else (TEXT_B, TEXT_A)
            answers_ = list(
                pool.map(
                    lambda t: client.post(f"{KB}/docs/documents", json={"id": "doc", "text": t}),
                    texts,
                )
            )
            assert all(a.status_code == 200 for a in answers_), [a.text for a in answers_]
            document = client.get(f"{KB}/docs/documents/doc").json()
            parts = document["data"]
            assert [p["position"] for p in parts] == list(range(len(parts)))
            assert document["content_sha256"] in HASHES
            assert client.get(f"{KB}/docs").json()["chunks"] == len(parts)
            winners.add(document["content_sha256"])
        print(f"winners over 50 rounds: {len(winners)} distinct versions")


def _assert_closed_still_closed(url: str) -> None:
    body = {
        "model": "bench-chat",
        "messages": [{"role": "user", "content": "What about gateways?"}],
        "rag": {"knowledge_base": "docs"},
    }
    response = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "retrieval_unavailable"
