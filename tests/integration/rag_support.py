"""Processes for the real-stack RAG tests: a gateway (`python -m server`) with its own settings
file, a Chroma server (`chroma run`), and a recording proxy that keeps every request a worker
receives, so tests can read the prompt the worker got rather than trust the gateway."""

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from ragway.stack import free_port

VENV_BIN = Path(sys.executable).parent


def wait_until(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {timeout:.0f} s")


@dataclass
class Gateway:
    """`python -m server` on a free port, configured by a YAML file like the Helm ConfigMap."""

    config: dict[str, Any]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        config_file = self.log.with_suffix(".yaml")
        config_file.write_text(yaml.safe_dump({**self.config, "port": self.port}))
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server"],
                env={**os.environ, "RAGWAY_CONFIG_FILE": str(config_file)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.url + "/readyz", timeout, self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def chroma_server(path: Path, log: Path, port: int | None = None) -> Iterator[str]:
    """`chroma run` (from the chromadb package) on `port` (default: a free local port); yields
    its URL."""
    port = port or free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "chroma"),
                "run",
                "--path",
                str(path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(url + "/api/v2/heartbeat", 60, process)
        yield url
    finally:
        process.terminate()
        process.wait(20)


class RecordingProxy:
    """Forwards every request to `target` and keeps each POST body, by path. Answers are
    relayed whole (buffered), which is all these tests need."""

    def __init__(self, target: str):
        self.target = target.rstrip("/")
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def posted(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for p, body in self.bodies if p == path]

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if method == "POST":
                    with proxy._lock:
                        proxy.bodies.append((self.path, orjson.loads(body)))
                headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED}
                answer = httpx.request(
                    method, proxy.target + self.path, content=body, headers=headers, timeout=300
                )
                self.send_response(answer.status_code)
                self.send_header("content-type", answer.headers.get("content-type", "text/plain"))
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._relay("GET")

            def do_POST(self) -> None:
                self._relay("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


_FORWARDED = {"content-type", "authorization", "x-request-id", "accept"}
