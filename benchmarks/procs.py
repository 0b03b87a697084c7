"""The benchmark's own processes: start one pinned to a core (taskset), wait until it answers,
read its CPU time and memory from the kernel's accounting, and stop it with everything it
started.

CPU time is utime + stime from /proc/<pid>/stat, summed over the process and its descendants
(a proxy may fork workers), so a gateway's cost per request comes from its own accounting and
not from how fast the box around it is. Peak RSS is VmHWM from /proc/<pid>/status, also
summed over the tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragway.stack import answers

_TICKS = os.sysconf("SC_CLK_TCK")


class LaunchError(RuntimeError):
    """A process did not start or did not become ready; the message has its log's end."""


def _children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(entry.path, "stat").read_text()
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, as they are now."""
    tree, found, todo = _children_of(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, ()))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes (all their threads), 0 for a gone one."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICKS


def memory_kib(pids: Sequence[int], key: str) -> int:
    """A /proc/<pid>/status figure (VmRSS, VmHWM) summed over the processes, in KiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
    return total


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    base_url: str = ""  # the OpenAI base URL, .../v1
    pids: list[int] = field(default_factory=list)

    def refresh(self) -> None:
        self.pids = process_tree(self.process.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pids or [self.process.pid])

    def rss_kib(self) -> int:
        return memory_kib(self.pids or [self.process.pid], "VmRSS")

    def peak_rss_kib(self) -> int:
        return memory_kib(self.pids or [self.process.pid], "VmHWM")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def start(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    cpus: str | None,
    env: dict[str, str] | None = None,
) -> Proc:
    """Start `argv` under `taskset -c cpus` (None: unpinned) in its own process group."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    command = ["taskset", "-c", cpus, *argv] if cpus is not None else list(argv)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc(name, process, log_path)


def wait_ready(proc: Proc, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not answers(url):
        if proc.process.poll() is not None:
            raise LaunchError(
                f"{proc.name} exited with code {proc.process.returncode}:\n{proc.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise LaunchError(f"{proc.name} not ready after {timeout:.0f} s:\n{proc.log_tail()}")
        time.sleep(0.25)
    proc.refresh()


def stop(proc: Proc, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.process.pid, signal.SIGKILL)
    proc.process.wait()


@contextlib.contextmanager
def running(procs: list[Proc]) -> Iterator[list[Proc]]:
    """Stops every process in `procs` (as it stands at exit), last started first."""
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            stop(proc)


def pin_self(cpus: set[int]) -> None:
    """Pin the calling process (the load generator) to `cpus`, where the machine has them."""
    available = os.sched_getaffinity(0)
    if cpus <= available:
        os.sched_setaffinity(0, cpus)
