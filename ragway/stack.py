"""Supervising the local stack's processes: start, wait until ready with progress, stop cleanly.

Each child runs in its own session (process group), so that stopping one stops everything it
started too (vLLM forks an engine core and workers). Each is also asked to receive SIGTERM if
the supervisor dies without cleaning up (Linux `PR_SET_PDEATHSIG`), so no orphans are left
even then.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import io
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ragway.launch import ProcessSpec, gateway_spec, write_gateway_config

_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """The stack cannot start; the message says why."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StackError(
                f"port {port} on {host} ({what}) is already in use: {exc.strerror}"
            ) from None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> bool:
    """Whether a GET of `url` answers 2xx within 2 s (a readiness probe)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= int(response.status) < 300
    # HTTPException: anything that is not an HTTP answer. A probe of a free port in the
    # ephemeral range can connect to itself (TCP simultaneous open) and read its own request
    # back ("BadStatusLine: GET /health HTTP/1.1"): that took a fresh-clone `ragway up` down.
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
        return False


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Child:
    spec: ProcessSpec
    log_path: Path
    process: subprocess.Popen[bytes]
    ready: bool = False
    restarts: list[float] = field(default_factory=list)


class Stack:
    def __init__(self, log_dir: Path, out: IO[str]):
        self._log_dir = log_dir
        self._out = out
        self._children: list[Child] = []
        self._started = time.monotonic()

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self._started:5.0f}s] {message}", file=self._out, flush=True)

    def start(self, spec: ProcessSpec) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._log_dir / (spec.name.replace(":", "-") + ".log")
        child = Child(spec, log_path, _spawn(spec, log_path))
        self._children.append(child)
        self.say(f"{spec.name}: started, pid {child.process.pid}, log {log_path}")

    def wait_ready(self, timeout: float, poll: float = 1.0) -> None:
        """Block until every child answers its readiness URL; raise if one dies or time runs out."""
        deadline = time.monotonic() + timeout
        next_note = time.monotonic() + 15
        while not all(child.ready for child in self._children):
            for child in self._children:
                self._check_alive(child)
                if not child.ready and answers(child.spec.ready_url):
                    child.ready = True
                    self.say(f"{child.spec.name}: ready")
            if time.monotonic() > deadline:
                waiting = [c.spec.name for c in self._children if not c.ready]
                raise StackError(f"not ready after {timeout:.0f} s: {', '.join(waiting)}")
            if time.monotonic() > next_note:
                waiting = [c.spec.name for c in self._children if not c.ready]
                self.say(f"waiting for {', '.join(waiting)} (vLLM CPU workers take a few minutes)")
                next_note = time.monotonic() + 15
            time.sleep(poll)

    def _check_alive(self, child: Child) -> None:
        code = child.process.poll()
        if code is not None:
            raise StackError(
                f"{child.spec.name} exited with code {code}; the end of its log "
                f"({child.log_path}):\n{_tail(child.log_path)}"
            )

    def watch(self, poll: float = 1.0, max_restarts: int = 5, window: float = 600.0) -> None:
        """Block while the stack runs, restarting a child that exits (a crashed or killed
        worker comes back, and the gateway re-admits it once it is healthy). A child that
        exits more than `max_restarts` times within `window` seconds stops the stack."""
        while True:
            for child in self._children:
                code = child.process.poll()
                if code is None:
                    continue
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < window] + [now]
                if len(child.restarts) > max_restarts:
                    self._check_alive(child)  # raises, with the end of its log
                _signal_group(child.process, signal.SIGKILL)  # whatever it left behind
                child.process = _spawn(child.spec, child.log_path)
                self.say(f"{child.spec.name}: exited with code {code}; restarted as pid "
                         f"{child.process.pid}")  # fmt: skip
            time.sleep(poll)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM each child's process group, last started first, waiting up to `grace` for
        each before SIGKILL. One at a time: the gateway (started last) drains its streams
        while the workers behind it still answer (server/drain.py)."""
        for child in reversed(self._children):
            _signal_group(child.process, signal.SIGTERM)
            try:
                child.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.say(f"{child.spec.name}: did not stop in {grace:.0f} s, killing it")
            _signal_group(child.process, signal.SIGKILL)  # whatever it left behind
            child.process.wait()
        self._children.clear()


def _spawn(spec: ProcessSpec, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            spec.argv,
            env={**os.environ, **spec.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


@contextlib.contextmanager
def serve_gateway(
    settings: dict[str, object], run_dir: Path, *, name: str = "gateway", timeout: float = 120.0
) -> Iterator[str]:
    """A gateway process (`python -m server`) with `settings` as its YAML file, on a free port,
    until the block ends; yields its base URL once /readyz answers. For tests and benchmarks
    that need a gateway configured differently from the one `ragway up` runs."""
    port = free_port()
    config = write_gateway_config(run_dir / f"{name}-{port}.yaml", {**settings, "port": port})
    stack = Stack(run_dir / "logs", io.StringIO())
    try:
        stack.start(gateway_spec(config, host="127.0.0.1", port=port))
        stack.wait_ready(timeout)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stack.stop()
