"""A client that disconnects while the gateway waits to retry leaves nothing running on any
worker: the retry never happens."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ragway.stack import serve_gateway
from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.stack

BACKOFF = 1.5  # seconds the gateway waits before its second attempt


class FlakyWorker(socketserver.StreamRequestHandler):
    """Claims to serve the real model, answers every generation with 503."""

    hits = 0

    def handle(self) -> None:
        method, path = self.rfile.readline().decode().split()[:2]
        length = 0
        while (line := self.rfile.readline().strip()) != b"":
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        self.rfile.read(length)
        if path == "/v1/models":
            body = json.dumps({"data": [{"id": "smollm2-135m-instruct"}]}).encode()
            status = b"200 OK"
        elif path == "/health":
            body, status = b"", b"200 OK"
        elif method == "POST":  # a generation; the gateway also scrapes /metrics
            FlakyWorker.hits += 1
            body, status = b'{"error": {"message": "overloaded"}}', b"503 Service Unavailable"
        else:
            body, status = b"", b"404 Not Found"
        head = b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close\r\n" % status
        self.wfile.write(head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.fixture
def retrying_gateway(stack: RunningStack, tmp_path: Path) -> Iterator[str]:
    flaky = socketserver.ThreadingTCPServer(("127.0.0.1", 0), FlakyWorker)
    flaky.daemon_threads = True
    threading.Thread(target=flaky.serve_forever, daemon=True).start()
    config: dict[str, object] = {
        # A fresh gateway per test, so its round robin starts at the flaky worker, which is
        # therefore tried first (a cancelled request leaves the rotation one step further on).
        "workers": [
            {"name": "flaky", "url": f"http://127.0.0.1:{flaky.server_address[1]}"},
            {"name": "real", "url": stack.chat_worker},
        ],
        "routing": {"chat_policy": "round_robin"},
        "retries": {"max_attempts": 3, "backoff": BACKOFF},
        "health": {"interval": 0.5, "eject_base": 0.001, "eject_max": 0.001},
    }
    try:
        with serve_gateway(config, tmp_path) as base_url:
            _wait_until_up(base_url, ("flaky", "real"))
            yield base_url
    finally:
        flaky.shutdown()


def _wait_until_up(base_url: str, names: tuple[str, ...]) -> None:
    """Ready means one chat worker is up; the test needs both in the rotation."""
    deadline = time.monotonic() + 120
    while True:
        ready = httpx.get(base_url.removesuffix("/v1") + "/readyz", timeout=30).json()
        up = {w["id"]: w["up"] for w in ready["workers"]}
        if all(up.get(name) for name in names):
            return
        assert time.monotonic() < deadline, f"the workers never came up: {ready['workers']}"
        time.sleep(0.1)


def _send_and_leave(base_url: str, body: dict[str, object], hits_before: int) -> None:
    """Send the request on a socket of its own and close it as soon as the flaky worker has
    refused the first attempt: the gateway is then in its back-off, with 1.5 s to go."""
    url = urlsplit(base_url)
    payload = json.dumps(body).encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: ragway\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
    )
    assert url.hostname is not None
    assert url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=30) as client:
        client.sendall(head + payload)
        deadline = time.monotonic() + 60
        while FlakyWorker.hits == hits_before:
            assert time.monotonic() < deadline, "the first attempt never reached the flaky worker"
            time.sleep(0.005)


@pytest.mark.parametrize("stream", [False, True])
def test_disconnect_during_retry_wait_starts_nothing(
    stack: RunningStack, retrying_gateway: str, stream: bool
) -> None:
    body = {"model": "smollm2-135m-instruct", "max_tokens": 200, "stream": stream,
            "messages": [{"role": "user", "content": "Tell me a long story."}]}  # fmt: skip
    hits_before = FlakyWorker.hits
    served_before = stack.worker_metric("vllm:request_success_total")
    _send_and_leave(retrying_gateway, body, hits_before)  # the client leaves in the back-off
    gone_at = time.monotonic()
    # Watch past the end of the back-off: had the retry gone ahead, it would be running now.
    while time.monotonic() - gone_at < BACKOFF + 1.0:
        assert stack.worker_metric("vllm:num_requests_running") == 0
        time.sleep(0.1)
    assert stack.worker_metric("vllm:request_success_total") == served_before
    assert FlakyWorker.hits == hits_before + 1  # nor was it retried on the flaky one
    print(f"\nstream={stream}: no request reached the real worker after the disconnect")
