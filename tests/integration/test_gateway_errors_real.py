"""Every error case, on real processes: a second gateway (uvicorn, `python -m server`) in front
of the real vLLM worker, a port nobody listens on, and a raw-socket worker that breaks HTTP."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator

import httpx
import openai
import pytest

from ragway.stack import free_port, serve_gateway
from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.stack

CHUNK = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "broken-model",
         "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}  # fmt: skip


class BrokenWorker(socketserver.StreamRequestHandler):
    """Healthy to probes, then breaks every generation: a body cut short, or a stream that
    dies after its first event."""

    def handle(self) -> None:
        path = self.rfile.readline().decode().split()[1]
        length = 0
        while (line := self.rfile.readline().strip()) != b"":
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        body = self.rfile.read(length)
        if path == "/health":
            self._whole(b"")
        elif path == "/v1/models":
            self._whole(json.dumps({"object": "list", "data": [{"id": "broken-model"}]}).encode())
        elif json.loads(body).get("stream"):
            event = b"data: " + json.dumps(CHUNK).encode() + b"\n\n"
            # One chunk of a chunked body, then the socket closes without the final chunk.
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            head += b"Transfer-Encoding: chunked\r\n\r\n"
            self.wfile.write(head + b"%x\r\n%s\r\n" % (len(event), event))
        else:
            # Promises 500 bytes, sends 10, closes.
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            self.wfile.write(head + b'Content-Length: 500\r\n\r\n{"partial')

    def _whole(self, body: bytes) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        self.wfile.write(head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.fixture(scope="module")
def edge_gateway(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broken = socketserver.ThreadingTCPServer(("127.0.0.1", 0), BrokenWorker)
    broken.daemon_threads = True
    threading.Thread(target=broken.serve_forever, daemon=True).start()
    config: dict[str, object] = {
        "workers": [
            {"name": "real", "url": stack.chat_worker, "kind": "chat"},
            {
                "name": "ghost",
                "url": f"http://127.0.0.1:{free_port()}",
                "kind": "chat",
                "models": ["ghost-model"],
            },
            {"name": "broken", "url": f"http://127.0.0.1:{broken.server_address[1]}"},
        ],
        "timeouts": {"read": 1.0},
        "health": {"interval": 0.5, "timeout": 2.0},
    }
    try:
        with serve_gateway(config, tmp_path_factory.mktemp("edge")) as base_url:
            yield base_url
    finally:
        broken.shutdown()


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_unreachable_worker_is_503(edge_gateway: str) -> None:
    client = openai.OpenAI(base_url=edge_gateway, api_key="x", max_retries=0)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(
            model="ghost-model", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 503


def test_broken_upstream_body_is_502(edge_gateway: str) -> None:
    body = {"model": "broken-model", "messages": [{"role": "user", "content": "x"}]}
    _error(httpx.post(edge_gateway + "/chat/completions", json=body, timeout=10), 502,
           "bad_upstream_response")  # fmt: skip


def test_stream_broken_after_start_ends_in_band(edge_gateway: str) -> None:
    body = {"model": "broken-model", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    response = httpx.post(edge_gateway + "/chat/completions", json=body, timeout=10)
    assert response.status_code == 200
    events = [e for e in response.text.split("\n\n") if e]
    assert json.loads(events[0].removeprefix("data: ")) == CHUNK
    assert "error" in json.loads(events[1].removeprefix("data: "))
    assert events[-1] == "data: [DONE]"


def test_slow_upstream_is_504(edge_gateway: str) -> None:
    body = {"model": "smollm2-135m-instruct", "max_tokens": 400, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Write a long story."}]}  # fmt: skip
    _error(httpx.post(edge_gateway + "/chat/completions", json=body, timeout=30), 504,
           "upstream_timeout")  # fmt: skip
