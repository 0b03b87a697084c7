"""Graceful drain, on real processes: a gateway (`python -m server`) in front of a paced fake
worker (benchmarks/fake_worker.py), 8 streams running, then SIGTERM.

With a grace longer than the streams, every stream ends whole, with `[DONE]`. With a shorter
one, every stream ends with an in-band `server_shutting_down` error event and `[DONE]`. A
connection opened after SIGTERM is refused or answered 503, never left hanging.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from ragway.launch import write_gateway_config
from ragway.stack import answers, free_port

pytestmark = pytest.mark.stack

STREAMS = 8
TOKENS_PER_S = 10.0
# uvicorn re-raises the signal it shut down on once it is done, so the exit is by SIGTERM.
EXITED = (0, -signal.SIGTERM)


def _wait_until(what: str, condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def _process(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


@contextmanager
def _fake_worker(tmp_path: Path, tokens: int) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.fake_worker", "--port", str(port)]
    argv += ["--tokens", str(tokens), "--tokens-per-s", str(TOKENS_PER_S)]
    with _process(argv, tmp_path / "worker.log"):
        url = f"http://127.0.0.1:{port}"
        _wait_until("the fake worker", lambda: answers(url + "/health"))
        yield url


@contextmanager
def _gateway(
    tmp_path: Path, worker: str, grace: float
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "workers": [{"name": "fake-0", "url": worker, "kind": "chat"}],
        "health": {"interval": 0.5},
        "shutdown": {"grace": grace},
        "rag": {"data_dir": str(tmp_path / "chroma")},
    }
    config = write_gateway_config(tmp_path / "gateway.yaml", settings)
    argv = [sys.executable, "-m", "server"]
    env = {"RAGWAY_CONFIG_FILE": str(config)}
    with _process(argv, tmp_path / "gateway.log", env) as process:
        url = f"http://127.0.0.1:{port}"
        _wait_until("the gateway", lambda: answers(url + "/readyz"))
        yield process, url


@dataclass
class _Stream:
    started: threading.Event = field(default_factory=threading.Event)
    events: list[bytes] = field(default_factory=list)
    failure: BaseException | None = None

    def run(self, url: str) -> None:
        body = {
            "model": "bench-chat",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
        try:
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
                assert r.status_code == 200, r.read()
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(line[6:].encode())
                        self.started.set()
        except BaseException as exc:
            self.failure = exc
        finally:
            self.started.set()

    @property
    def content(self) -> str:
        parts = []
        for event in self.events:
            if event != b"[DONE]":
                for choice in orjson.loads(event).get("choices", []):
                    parts.append(choice.get("delta", {}).get("content") or "")
        return "".join(parts)


def _run_streams_then_sigterm(process: subprocess.Popen[bytes], url: str) -> list[_Stream]:
    streams = [_Stream() for _ in range(STREAMS)]
    threads = [threading.Thread(target=s.run, args=(url,)) for s in streams]
    for thread in threads:
        thread.start()
    for stream in streams:
        assert stream.started.wait(60), "a stream never started"
    assert all(s.failure is None for s in streams), [s.failure for s in streams]
    process.send_signal(signal.SIGTERM)
    _assert_new_connections_are_turned_away(url)
    for thread in threads:
        thread.join(120)
    return streams


def _assert_new_connections_are_turned_away(url: str) -> None:
    """Right after SIGTERM: refused, or 503; a hang fails (the timeout raises)."""
    for _ in range(5):
        try:
            response = httpx.get(url + "/readyz", timeout=5)
        except httpx.ConnectError:
            pass
        else:
            assert response.status_code == 503, response.text
        time.sleep(0.1)


def test_a_grace_longer_than_the_streams_lets_them_finish(tmp_path: Path) -> None:
    tokens = 30  # 3 s per stream
    with _fake_worker(tmp_path, tokens) as worker, _gateway(tmp_path, worker, 60) as (proc, url):
        streams = _run_streams_then_sigterm(proc, url)
        assert proc.wait(60) in EXITED
    for stream in streams:
        assert stream.failure is None, stream.failure
        assert stream.events[-1] == b"[DONE]"
        assert stream.content == " hi" * tokens
        assert not any(b'"error"' in e for e in stream.events)


def test_a_shorter_grace_ends_every_stream_in_band(tmp_path: Path) -> None:
    tokens = 600  # 60 s per stream, far beyond the grace
    with _fake_worker(tmp_path, tokens) as worker, _gateway(tmp_path, worker, 1.5) as (proc, url):
        streams = _run_streams_then_sigterm(proc, url)
        assert proc.wait(60) in EXITED
    for stream in streams:
        assert stream.failure is None, stream.failure
        assert stream.events[-1] == b"[DONE]"
        error = orjson.loads(stream.events[-2])["error"]
        assert error["code"] == "server_shutting_down"
        assert 0 < len(stream.content) < len(" hi" * tokens)
