"""The request path's CPU, A/B, without a server: the gateway's app called in process
(benchmarks/inproc_app.py) against the fake worker, for this tree (auth off; with `--auth`
also auth with four limits in process; with `--flow-off` also flow control off) and for older
trees (`--baseline REF`).

What it is for: small changes to the request path. The overhead run (`python -m benchmarks
overhead`) prices a whole gateway, server and client included, and its rounds spread by
±10-20 % on this machine; calling the app directly leaves out uvicorn, the client and their
sockets, and a try of a few thousand requests repeats within a few per cent. It does not
replace the overhead run: the server's share and its interplay with the client are real costs
that only that run sees.

Method: the fake worker runs pinned to `--worker-cpu`; each try is a fresh process pinned to
`--gateway-cpu` that starts the app's lifespan, sends `--warmup` chats, then `--requests` chats
from `--concurrency` callers, and reports its own CPU time (`time.process_time`) per request.
Targets take turns within a try and the order rotates between tries. The figure per target is
the median over tries (the minimum is shown too); ratios are of medians, against the first
baseline (or against this tree with auth off).

    python -m benchmarks inproc --baseline 54fa6d4 --auth --tries 5 --concurrency 1 16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import targets, tenancy_targets
from benchmarks.procs import pin_self, running
from benchmarks.tables import table

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "inproc_app.py"
MODEL = "bench-chat"


def plan(args: argparse.Namespace, run_dir: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Target name -> (tree, extra spec)."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for ref in args.baseline:
        found[f"ragway@{ref}"] = (targets.source_tree(ref), {})
    found["ragway"] = (REPO, {})
    if args.auth:
        keys = str(tenancy_targets.key_file(run_dir))
        found["ragway-auth"] = (REPO, {"keys_file": keys, "key": tenancy_targets.BENCH_KEY})
    if args.flow_off:
        found["ragway-flow-off"] = (REPO, {"settings": {"flow": {"enabled": False}}})
    return found


def one_try(tree: Path, spec: dict[str, Any], cpu: str | None) -> dict[str, float]:
    # -P: the runner's own folder (benchmarks/, whose profile.py shadows the standard
    # library's) stays off sys.path; only the tree under test is importable from here.
    command = [sys.executable, "-P", str(RUNNER), json.dumps(spec)]
    if cpu is not None:
        command = ["taskset", "-c", cpu, *command]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"a try failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = args.out / "raw" / f"inproc-{time.strftime('%Y%m%dT%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.worker_cpu is not None:
        pin_self({int(c) for c in args.worker_cpu.split(",")})
    found = plan(args, run_dir)
    names = list(found)
    tries: dict[str, dict[int, list[dict[str, float]]]] = {
        n: {c: [] for c in args.concurrency} for n in names
    }
    procs: list[Any] = []
    with running(procs):
        worker = targets.fake_worker(
            run_dir, args.worker_cpu, tokens=64, tokens_per_s=1000.0, delay_ms=0.0
        )
        procs.append(worker)
        for attempt in range(args.tries):
            for concurrency in args.concurrency:
                shift = attempt % len(names)
                for name in names[shift:] + names[:shift]:
                    tree, extra = found[name]
                    spec = {"worker": worker.base_url.removesuffix("/v1"), "model": MODEL,
                            "requests": args.requests, "concurrency": concurrency,
                            "warmup": args.warmup, **extra}  # fmt: skip
                    result = one_try(tree, spec, args.gateway_cpu)
                    tries[name][concurrency].append(result)
                    print(f"try {attempt + 1} c={concurrency} {name}: "
                          f"{result['cpu_us']:.1f} µs CPU per request", flush=True)  # fmt: skip
    return {
        "benchmark": "inproc",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "targets": names,
        "tries": tries,
    }


def summary(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Per target and concurrency: median and minimum CPU µs per request, and the ratio of
    medians to the reference (the first target)."""
    names: list[str] = results["targets"]
    tries = results["tries"]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        out[name] = {}
        for c, values in tries[name].items():
            cpu = [v["cpu_us"] for v in values]
            out[name][str(c)] = {"median_us": statistics.median(cpu), "min_us": min(cpu)}
    reference = names[0]
    for name in names:
        for c, row in out[name].items():
            row["ratio"] = row["median_us"] / out[reference][c]["median_us"]
    return out


def render(results: dict[str, Any]) -> str:
    rows = summary(results)
    names: list[str] = results["targets"]
    concurrencies = list(rows[names[0]])
    head = ["target"] + [f"c={c}: µs/req, median [min]" for c in concurrencies]
    head += [f"c={c}: ÷ {names[0]}" for c in concurrencies]
    body = [
        [f"**{name}**"]
        + [
            f"{rows[name][c]['median_us']:.1f} [{rows[name][c]['min_us']:.1f}]"
            for c in concurrencies
        ]
        + [f"{rows[name][c]['ratio']:.3f}" for c in concurrencies]
        for name in names
    ]
    p = results["parameters"]
    intro = (
        f"Run of {results['when']} on {results['machine']}: {p['tries']} tries of "
        f"{p['requests']} chats per target and concurrency, the app in process on core "
        f"{p['gateway_cpu']}, the fake worker on {p['worker_cpu']} (method in "
        "`benchmarks/inproc.py`).\n\n"
    )
    return intro + table(head, body) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks inproc",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--baseline", nargs="*", default=[], help="git refs to compare against")
    p.add_argument("--auth", action="store_true", help="also this tree with auth and limits")
    p.add_argument("--flow-off", action="store_true", help="also this tree without flow control")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    p.add_argument("--requests", type=int, default=6000, help="per try")
    p.add_argument("--warmup", type=int, default=500, help="per try, not counted")
    p.add_argument("--tries", type=int, default=3)
    p.add_argument("--gateway-cpu", default="1", help="'none': unpinned")
    p.add_argument("--worker-cpu", default="0", help="the fake worker (and this process)")
    p.add_argument("--out", type=Path, default=RESULTS / "inproc")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.gateway_cpu = None if args.gateway_cpu == "none" else args.gateway_cpu
    args.worker_cpu = None if args.worker_cpu == "none" else args.worker_cpu
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inproc.json").write_text(json.dumps(results, indent=1))
    text = render(results)
    (args.out / "inproc.md").write_text(text)
    print(text)
