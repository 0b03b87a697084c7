"""Extra gateways for the overhead run, to price tenancy: this tree with auth and limits
counted in process or in Redis (compare with `--baseline main`: ragway without auth).

Every auth target's key has all four counted limits (requests, tokens per minute, tokens per
day, concurrency), set far above what the run sends, so that admission and settlement do their
whole work on every request and never refuse one.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from benchmarks import targets
from benchmarks.procs import LaunchError, Proc, start
from ragway.stack import free_port
from server.tenancy.keys import KeyEntry, hash_key, write_entries

BENCH_KEY = "sk-bench-tenant"
HEADERS = {"authorization": f"Bearer {BENCH_KEY}"}
_LIMITS = {"rpm": 10**9, "tpm": 10**12, "tokens_per_day": 10**15, "concurrency": 10**6}


def key_file(run_dir: Path) -> Path:
    path = run_dir / "keys.yaml"
    entry = KeyEntry.model_validate({"name": "bench", "sha256": hash_key(BENCH_KEY),
                                     "limits": _LIMITS})  # fmt: skip
    write_entries(path, [entry])
    return path


def redis(run_dir: Path, cpus: str | None) -> tuple[Proc, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise LaunchError("redis-server is not installed")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--dir", str(run_dir)]  # fmt: skip
    proc = start("redis", argv, log_dir=run_dir / "logs", cpus=cpus)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.process.poll() is not None:
            raise LaunchError("redis-server did not start")
        time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def with_auth(run_dir: Path, worker: str, cpus: str | None, redis_url: str | None = None) -> Proc:
    name = "ragway-auth-redis" if redis_url else "ragway-auth"
    auth = {"keys_file": str(key_file(run_dir))}
    if redis_url:
        return targets.ragway(run_dir / name, worker, cpus, name=name, auth=auth,
                              state={"redis_url": redis_url})  # fmt: skip
    return targets.ragway(run_dir / name, worker, cpus, name=name, auth=auth)
