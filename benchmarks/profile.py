"""Where the gateway's CPU time goes: py-spy samples of ragway under load from the fake worker.

The gateway is pinned to `--gateway-cpu`, the worker and the load to `--client-cpu`, as in the
overhead run. For each SCENARIO:CONCURRENCY in `--load` a closed loop runs while py-spy records
the gateway twice (a flame graph SVG, then collapsed stacks for the tables). Idle samples
(the event loop waiting) are left out, so the shares are shares of CPU time. The tables: top
functions by own time, ragway's own functions by inclusive time, and own time by package.

    python -m benchmarks profile --duration 15 --load chat:64 chat-stream:4
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections import Counter
from pathlib import Path

from benchmarks import targets, tenancy_targets
from benchmarks.loadgen import closed_loop, new_session
from benchmarks.overhead import RESULTS, workload
from benchmarks.procs import Proc, pin_self, running
from benchmarks.tables import table

_LINE = re.compile(r":\d+\)$")
_OURS = ("server/", "router/")  # ragway's packages, as py-spy names their files


def py_spy() -> str:
    return str(Path(sys.executable).parent / "py-spy")


async def record(pid: int, seconds: float, fmt: str, out: Path, rate: int) -> None:
    process = await asyncio.create_subprocess_exec(
        py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)),
        "--rate", str(rate), "--nonblocking", "--format", fmt, "--output", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-2000:]}")


def frame(name: str) -> str:
    """`fn (path/file.py:123)` -> `fn (file.py)`: lines of one function add up."""
    head, _, where = _LINE.sub(")", name).partition(" (")
    return f"{head} ({Path(where.rstrip(')')).name})" if where else head


def package(name: str) -> str:
    """py-spy names files relative to their import root: `starlette/routing.py:683`."""
    where = name.rpartition(" (")[2]
    return where.split("/", 1)[0] if "/" in where else "(other)"


def tables(collapsed: str, top: int = 20) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), stack.split(";")
        total += count
        own[frame(frames[-1])] += count
        packages[package(frames[-1])] += count
        mine = {f for f in frames if f.rpartition(" (")[2].startswith(_OURS)}
        for name in {frame(f) for f in mine if "__main__.py" not in f}:
            inclusive[name] += count

    def rows(counter: Counter[str], n: int) -> list[list[str]]:
        return [[f"`{k}`", f"{v / total:.1%}"] for k, v in counter.most_common(n)]

    head = ["function", "share of CPU"]
    return "\n\n".join([
        f"{total:,} CPU samples.",
        "Own time by package:", table(["package", "share of CPU"], rows(packages, 12)),
        "Top functions, own time:", table(head, rows(own, top)),
        "ragway's own functions (server/, router/), inclusive:", table(head, rows(inclusive, top)),
    ])  # fmt: skip


async def profile(gateway: Proc, scenario: str, width: int, args: argparse.Namespace) -> str:
    stem = args.out / f"profile-{scenario}-c{width}"
    headers = tenancy_targets.HEADERS if args.tenancy else None
    async with new_session(width, headers) as session:
        load = asyncio.create_task(closed_loop(
            session, gateway.base_url, workload(scenario, args.tokens),
            concurrency=width, duration=2 * args.duration + 6,
            max_requests=10_000_000, sink=lambda r: None,
        ))  # fmt: skip
        await asyncio.sleep(2)  # warm-up
        await record(
            gateway.process.pid, args.duration, "flamegraph", stem.with_suffix(".svg"), 200
        )
        raw = args.out / "raw" / "profile" / f"{stem.name}.txt"  # collapsed stacks: large
        await record(gateway.process.pid, args.duration, "raw", raw, 200)
        await load
    return tables(raw.read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks profile", description=__doc__)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per recording")
    parser.add_argument(
        "--load", nargs="+", default=["chat:64", "chat-stream:4"], help="SCENARIO:CONCURRENCY"
    )
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--tokens-per-s", type=float, default=1000.0)
    parser.add_argument("--gateway-cpu", default="1")
    parser.add_argument("--client-cpu", default="0")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--tenancy", action="store_true", help="profile with auth and in-process limits on"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = args.out / "raw" / "profile"
    pin_self({int(c) for c in args.client_cpu.split(",")})
    procs: list[Proc] = []
    with running(procs):
        procs.append(targets.fake_worker(run_dir, args.client_cpu, tokens=args.tokens,
                                         tokens_per_s=args.tokens_per_s, delay_ms=0))  # fmt: skip
        if args.tenancy:
            procs.append(tenancy_targets.with_auth(run_dir, procs[0].base_url, args.gateway_cpu))
        else:
            procs.append(targets.ragway(run_dir, procs[0].base_url, args.gateway_cpu))
        parts = [
            f"### {scenario}, concurrency {width}\n\n"
            f"![flame graph](profile-{scenario}-c{width}.svg)\n\n"
            + asyncio.run(profile(procs[1], scenario, int(width), args))
            for scenario, width in (load.split(":") for load in args.load)
        ]
    (args.out / "profile.md").write_text("\n\n".join(parts) + "\n")
    print(f"wrote {args.out / 'profile.md'}")
