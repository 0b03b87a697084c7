"""Attack suite: hostile requests against a running gateway, one case at a time, over loopback.

Every case is bounded in count and time. For each it prints the answer (status, or `closed`),
the time to it, the gateway's RSS growth (peak during the case over the level before it, whole
process tree) and the worst /healthz latency seen while the case ran (a probe every 20 ms on
its own connection). Cases that need a knowledge base create one (so an embedding worker must
be up) and delete it after.

    python -m benchmarks attack --url http://127.0.0.1:8000 [--pid PID] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from http.client import HTTPConnection, HTTPException
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from benchmarks import attack_cases
from benchmarks.procs import memory_kib, process_tree

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Outcome:
    case: str
    expect: str
    answer: str  # the status, or "closed"
    seconds: float
    limit_s: float
    rss_growth_mib: float
    worst_healthz_ms: float
    ok: bool


@dataclass
class Target:
    url: str
    pid: int | None
    embedding_model: str | None = None
    kb: str | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:`port` (Linux /proc), to watch its memory."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = str(fd.readlink())
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def rss_mib(pid: int | None) -> float:
    return 0.0 if pid is None else memory_kib(process_tree(pid), "VmRSS") / 1024


def _probe(url: str, pid: int | None, conn: Connection) -> None:
    """In its own process, so that building a hostile body here never delays a probe: GET
    /healthz every 20 ms on a kept-alive connection and sample RSS; on "start" reset the
    worst figures, on "stop" send them back, on "exit" return."""
    host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80
    http = HTTPConnection(host, port, timeout=30)
    worst, peak = 0.0, 0.0
    while True:
        if conn.poll(0.02):
            command = conn.recv()
            if command == "exit":
                return
            if command == "stop":
                conn.send((worst, peak))
            worst, peak = 0.0, rss_mib(pid)
        started = time.perf_counter()
        try:
            http.request("GET", "/healthz")
            http.getresponse().read()
        except (OSError, HTTPException):
            http.close()
            http = HTTPConnection(host, port, timeout=30)
        worst = max(worst, time.perf_counter() - started)
        peak = max(peak, rss_mib(pid))


class Watcher:
    def __init__(self, target: Target):
        self._conn, child = multiprocessing.get_context("spawn").Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=_probe, args=(target.url, target.pid, child), daemon=True
        )
        self._process.start()

    def start(self) -> None:
        self._conn.send("start")

    def stop(self) -> tuple[float, float]:
        self._conn.send("stop")
        worst, peak = self._conn.recv()
        return float(worst), float(peak)

    def close(self) -> None:
        self._conn.send("exit")
        self._process.join(10)


async def run_case(target: Target, case: attack_cases.Case, watcher: Watcher) -> Outcome:
    before = rss_mib(target.pid)
    watcher.start()
    await asyncio.sleep(0.1)
    started = time.perf_counter()
    own: float | None = None
    try:
        answer = await asyncio.wait_for(case.run(target.url, target.kb), case.limit_s + 20)
        if isinstance(answer, tuple):
            answer, own = answer
    except TimeoutError:
        answer = "hung"
    except (httpx.HTTPError, OSError) as exc:
        answer = f"error: {type(exc).__name__}"
    took = time.perf_counter() - started if own is None else own
    await asyncio.sleep(0.1)  # let the watcher see the aftermath
    worst, peak = watcher.stop()
    return Outcome(
        case=case.name,
        expect=case.expect,
        answer=answer,
        seconds=round(took, 3),
        limit_s=case.limit_s,
        rss_growth_mib=round(max(0.0, peak - before), 1),
        worst_healthz_ms=round(worst * 1000, 1),
        ok=case.accepts(answer) and took <= case.limit_s,
    )


async def _with_kb(target: Target, body: Callable[[], Awaitable[list[Outcome]]]) -> list[Outcome]:
    name = f"attack-{int(time.time())}"
    async with httpx.AsyncClient(base_url=target.url, timeout=30) as client:
        create: dict[str, Any] = {"name": name, "chunk_tokens": 16}
        if target.embedding_model:
            create["embedding_model"] = target.embedding_model
        created = await client.post("/v1/knowledge_bases", json=create)
        target.kb = name if created.status_code == 200 else None
        if target.kb is None:
            print(f"no knowledge base ({created.status_code}): the upload cases are skipped")
        try:
            return await body()
        finally:
            if target.kb is not None:
                await client.delete(f"/v1/knowledge_bases/{name}")


async def run_all(target: Target, only: list[str] | None = None) -> list[Outcome]:
    chosen = [c for c in attack_cases.CASES if not only or c.name in only]

    async def body() -> list[Outcome]:
        outcomes = []
        watcher = Watcher(target)
        try:
            for case in chosen:
                if case.needs_kb and target.kb is None:
                    continue
                outcome = await run_case(target, case, watcher)
                print(table_row(outcome), flush=True)
                outcomes.append(outcome)
        finally:
            watcher.close()
        return outcomes

    return await _with_kb(target, body)


HEADER = (
    "| case | expected | answer | time s (limit) | RSS growth MiB | worst /healthz ms | ok |\n"
    "|---|---|---|---|---|---|---|"
)


def table_row(o: Outcome) -> str:
    return (
        f"| {o.case} | {o.expect} | {o.answer} | {o.seconds:.3f} ({o.limit_s:g}) | "
        f"{o.rss_growth_mib:.1f} | {o.worst_healthz_ms:.1f} | {'yes' if o.ok else '**no**'} |"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks attack", description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway (loopback)")
    p.add_argument("--pid", type=int, default=None, help="gateway pid (default: the listener)")
    p.add_argument("--embedding-model", default=None, help="for the suite's knowledge base")
    p.add_argument("--only", nargs="*", default=None, help="run only these cases")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    host = urlsplit(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the attack suite runs over loopback only")
    pid = args.pid or listening_pid(urlsplit(args.url).port or 80)
    target = Target(args.url, pid, args.embedding_model)
    print(HEADER)
    outcomes = asyncio.run(run_all(target, args.only))
    args.out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"url": args.url, "cases": [asdict(o) for o in outcomes]}
    (args.out / "attack.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.out / "attack.md").write_text(
        HEADER + "\n" + "\n".join(table_row(o) for o in outcomes) + "\n"
    )
    failed = [o.case for o in outcomes if not o.ok]
    print(
        f"{len(outcomes) - len(failed)}/{len(outcomes)} cases ok"
        + (f"; failed: {failed}" if failed else "")
    )
    raise SystemExit(1 if failed else 0)
