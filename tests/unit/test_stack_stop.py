"""`ragway up`'s stop (Ctrl-C or SIGTERM): the gateway, started last, is stopped first and
waited for, so it drains its streams while the workers behind it still answer."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from ragway.launch import ProcessSpec
from ragway.stack import Stack

# Writes when it got SIGTERM, takes `delay` seconds to drain, then writes when it exits.
CHILD = """
import signal, sys, time
out, delay = sys.argv[1], float(sys.argv[2])
def stop(*_):
    with open(out, "a") as f:
        f.write(f"term {time.time()}\\n")
    time.sleep(delay)
    with open(out, "a") as f:
        f.write(f"exit {time.time()}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(out, "a").write("ready\\n")
while True:
    time.sleep(0.05)
"""


def _spec(name: str, out: Path, delay: float) -> ProcessSpec:
    return ProcessSpec(name, [sys.executable, "-c", CHILD, str(out), str(delay)], "http://unused")


def _times(path: Path) -> dict[str, float]:
    return {
        word: float(value)
        for word, value in (line.split() for line in path.read_text().splitlines() if " " in line)
    }


def test_the_last_started_child_is_stopped_and_waited_for_first(tmp_path: Path) -> None:
    worker, gateway = tmp_path / "worker.txt", tmp_path / "gateway.txt"
    stack = Stack(tmp_path / "logs", io.StringIO())
    stack.start(_spec("worker", worker, 0))
    stack.start(_spec("gateway", gateway, 1.0))
    deadline = time.monotonic() + 30
    while not (worker.exists() and gateway.exists()):
        assert time.monotonic() < deadline, "the children never started"
        time.sleep(0.05)
    stack.stop(grace=20)
    assert _times(worker)["term"] >= _times(gateway)["exit"]
