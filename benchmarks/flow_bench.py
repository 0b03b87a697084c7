"""Flow control under a flood: an interactive tenant (high priority, one short streamed chat
every 2 s) beside a batch tenant (batch priority, `--flood` long streams kept open), through
ragway with flow control off and on, against one worker, in one run.

Phases, each against the same worker, per round: the interactive tenant alone through the
flow-on gateway (the reference), then the flood through each gateway in turn (flow off, flow on,
and any `--variant` thresholds), in an order that rotates between rounds; the targets are
judged on medians over the rounds. The worker is drained
(nothing running or waiting) between phases. Each gateway has its own key file with both
tenants' keys (`priority: high` and `priority: batch`).

- `--workers fake`: benchmarks/capacity_worker.py, a toy engine with a fixed number of decode
  slots, per-token time growing with the batch and a queue beyond the slots (quick; the test
  command runs a small one).
- `--workers vllm`: one real vLLM CPU worker (SmolLM2-135M, `--scheduling-policy priority`).

The worker is pinned to `--worker-cpu`, the gateways and this load generator to `--client-cpu`.

    python -m benchmarks flow --workers fake
    python -m benchmarks flow --workers vllm --duration 60 --ramp 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks import flow_report, targets
from benchmarks.flow_load import Load, figures, run_phase, stream
from benchmarks.loadgen import new_session
from benchmarks.procs import Proc, cpu_seconds, pin_self, running, start, wait_ready
from ragway import launch, weights
from ragway.stack import free_port
from server.tenancy.keys import KeyEntry, hash_key, write_entries

RESULTS = Path(__file__).resolve().parent / "results"
TENANTS = {"interactive": ("sk-bench-interactive", "high"), "batch": ("sk-bench-batch", "batch")}
_GAUGES = {"vllm:num_requests_running": "running", "vllm:num_requests_waiting": "waiting",
           "vllm:kv_cache_usage_perc": "kv"}  # fmt: skip


def cpus(text: str) -> str | None:
    """A taskset CPU list, or None for `none` (unpinned: the tests)."""
    return None if text == "none" else text


def key_file(run_dir: Path) -> Path:
    entries = [
        KeyEntry.model_validate({"name": name, "sha256": hash_key(key), "priority": priority})
        for name, (key, priority) in TENANTS.items()
    ]
    run_dir.mkdir(parents=True, exist_ok=True)
    write_entries(run_dir / "keys.yaml", entries)
    return run_dir / "keys.yaml"


def tenant_headers() -> tuple[dict[str, str], dict[str, str]]:
    return tuple(  # type: ignore[return-value]
        {"authorization": f"Bearer {TENANTS[name][0]}"} for name in ("interactive", "batch")
    )


def fake_worker(run_dir: Path, args: argparse.Namespace) -> Proc:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.capacity_worker", "--port", str(port),
            "--slots", str(args.slots), "--step-ms", str(args.step_ms), "--per-seq-ms",
            str(args.per_seq_ms), "--scheduling-policy", args.scheduling_policy]  # fmt: skip
    proc = start("capacity-worker", argv, log_dir=run_dir / "logs", cpus=cpus(args.worker_cpu))
    proc.base_url = f"http://127.0.0.1:{port}"
    wait_ready(proc, proc.base_url + "/health", 30)
    return proc


def vllm_worker(run_dir: Path, args: argparse.Namespace) -> Proc:
    port = free_port()
    model_dir = weights.prepare_chat_model(Path("~/.cache/ragway").expanduser())
    spec = launch.vllm_spec(model_dir, "smollm2-135m-instruct", host="127.0.0.1", port=port,
                            kv_cache_gib=args.kv_cache_gib, max_model_len=2048,
                            cpu_bind=cpus(args.worker_cpu))  # fmt: skip
    argv = [*spec.argv, "--scheduling-policy", args.scheduling_policy]
    proc = start("vllm", argv, log_dir=run_dir / "logs", cpus=cpus(args.worker_cpu), env=spec.env)
    proc.base_url = f"http://127.0.0.1:{port}"
    wait_ready(proc, spec.ready_url, 900)
    return proc


def flow_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Gateway name -> its `flow:` settings ({}: the defaults)."""
    found = {"flow-off": orjson.loads(args.flow_off), "flow-on": orjson.loads(args.flow_on)}
    for variant in args.variant:
        name, _, text = variant.partition("=")
        found[f"flow-{name}"] = orjson.loads(text)
    return found


@contextlib.contextmanager
def stack(args: argparse.Namespace, run_dir: Path) -> Iterator[tuple[Proc, dict[str, Proc]]]:
    procs: list[Proc] = []
    with running(procs):
        fake = args.workers == "fake"
        worker = fake_worker(run_dir, args) if fake else vllm_worker(run_dir, args)
        procs.append(worker)
        auth = {"keys_file": str(key_file(run_dir))}
        gateways: dict[str, Proc] = {}
        for name, flow in flow_settings(args).items():
            gateways[name] = targets.ragway(run_dir, worker.base_url + "/v1", cpus(args.client_cpu),
                                            ("chat",), name=f"ragway-{name}", auth=auth,
                                            flow=flow)  # fmt: skip
            procs.append(gateways[name])
        yield worker, gateways


async def gauges(worker: str) -> dict[str, float]:
    """The worker's running and waiting requests and KV-cache use, from its /metrics."""
    found: dict[str, float] = {}
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(worker + "/metrics") as response,
    ):
        text = await response.text()
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in _GAUGES:
            key = _GAUGES[name]
            found[key] = found.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


async def drain(worker: str, limit: float = 300.0) -> float:
    """Wait until the worker has nothing running or waiting (at most `limit` s); the seconds
    it took."""
    began = time.perf_counter()
    while time.perf_counter() - began < limit:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            now = await gauges(worker)
            if now.get("running", 0) + now.get("waiting", 0) == 0:
                break
        await asyncio.sleep(0.5)
    return time.perf_counter() - began


def cpu_now(worker: Proc, gateway: Proc) -> dict[str, float]:
    """CPU seconds so far: the gateway (its process tree), the worker's own process (vLLM's API
    server) and its children (vLLM's engine core), this load generator; and the wall clock."""
    worker_tree = worker.pids or [worker.process.pid]
    return {
        "gateway": gateway.cpu(),
        "worker": cpu_seconds([worker.process.pid]),
        "worker_children": cpu_seconds([p for p in worker_tree if p != worker.process.pid]),
        "client": cpu_seconds([os.getpid()]),
        "wall": time.perf_counter(),
    }


def cpu_cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Each one's CPU over the phase (ramp included), in cores: 1.0 is one core all the time."""
    wall = after["wall"] - before["wall"]
    return {k: (after[k] - before[k]) / wall for k in before if k != "wall"}


def plan(names: list[str], rounds: int) -> list[tuple[str, str, bool]]:
    """(phase label, gateway, flood?): each round the reference first, then the floods, in an
    order that rotates; the report takes medians over rounds, so on a shared machine a burst
    of someone else's work skews one phase of one round, not the verdict."""
    phases = []
    for number in range(rounds):
        shift = number % len(names)
        tag = f" ({number + 1})" if rounds > 1 else ""
        phases += [(f"alone{tag}", "flow-on", False)]
        phases += [(f"flood, {n}{tag}", n, True) for n in names[shift:] + names[:shift]]
    return phases


def bodies(model: str, args: argparse.Namespace) -> tuple[bytes, bytes]:
    """The batch tenant asks for usage in every chunk, through every gateway alike: its
    tokens are counted from it (flow_load.chunk_tokens), coalesced chunks or not."""

    def body(prompt: str, tokens: int, every_chunk: bool) -> bytes:
        options = {"include_usage": True, "continuous_usage_stats": every_chunk}
        return orjson.dumps({"model": model, "messages": [{"role": "user", "content": prompt}],
                             "max_tokens": tokens, "ignore_eos": True, "stream": True,
                             "stream_options": options})  # fmt: skip

    return body("Say hello.", args.interactive_tokens, False), body(
        "Tell me a long story.", args.batch_tokens, True
    )


async def warm_up(gateways: dict[str, Proc], body: bytes) -> None:
    """Two unrecorded interactive chats through each gateway: connections, key file, caches."""
    for proc in gateways.values():
        async with new_session(4, tenant_headers()[0], read_timeout=600) as session:
            for _ in range(2):
                await stream(session, proc.base_url + "/chat/completions", body, lambda _: None)


async def run_phases(
    worker: Proc, gateways: dict[str, Proc], args: argparse.Namespace, model: str, keep: Path
) -> list[dict[str, Any]]:
    """Every phase in turn; each one's figures are also written to `keep` as it ends, so a run
    cut short still leaves what it measured."""
    interactive, batch = bodies(model, args)
    await warm_up(gateways, interactive)
    phases: list[dict[str, Any]] = []
    for number, (label, gateway, flooded) in enumerate(plan(list(gateways), args.rounds)):
        load = Load(args.interval, args.duration if flooded else args.alone_duration,
                    args.ramp, args.flood if flooded else 0, interactive, batch,
                    give_up=args.give_up)  # fmt: skip
        print(f"phase {number + 1}: {label} ...", flush=True)
        for proc in (worker, gateways[gateway]):
            proc.refresh()
        before = cpu_now(worker, gateways[gateway])
        raw = await run_phase(gateways[gateway].base_url, tenant_headers(), load,
                              lambda: gauges(worker.base_url))  # fmt: skip
        cores = cpu_cores(before, cpu_now(worker, gateways[gateway]))
        drained = await drain(worker.base_url)
        phases.append({"phase": label, "gateway": gateway, "flood": load.flood,
                       "drained_s": drained, "cpu_cores": cores, **figures(raw)})  # fmt: skip
        print("  " + flow_report.one_line(phases[-1]), flush=True)
        await asyncio.to_thread(keep.write_text, json.dumps(phases, indent=1, default=str))
    return phases


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = args.out / "raw" / f"flow-{args.workers}-{time.strftime('%Y%m%dT%H%M%S')}"
    if cpus(args.client_cpu) is not None:
        pin_self({int(c) for c in args.client_cpu.split(",")})
    load_before = os.getloadavg()
    with stack(args, run_dir) as (worker, gateways):
        model = "bench-chat" if args.workers == "fake" else "smollm2-135m-instruct"
        phases = asyncio.run(run_phases(worker, gateways, args, model, run_dir / "phases.json"))
    return {
        "benchmark": "flow",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
        "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "phases": phases,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks flow", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--workers", choices=["fake", "vllm"], default="fake")
    p.add_argument("--flood", type=int, default=128, help="batch streams kept open")
    p.add_argument("--interval", type=float, default=2.0, help="s between interactive chats")
    p.add_argument("--duration", type=float, default=30.0, help="recorded s per flood phase")
    p.add_argument("--alone-duration", type=float, default=20.0, help="recorded s, reference")
    p.add_argument("--ramp", type=float, default=10.0, help="unrecorded s of flood first")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--give-up", type=float, default=60.0, help="s to an interactive chat's "
                   "first token before it is abandoned")  # fmt: skip
    p.add_argument("--interactive-tokens", type=int, default=16)
    p.add_argument("--batch-tokens", type=int, default=512, help="per batch stream (ignore_eos)")
    p.add_argument(
        "--flow-off",
        default='{"enabled": false, "engine_priority": false}',
        help="JSON `flow:` settings of the flow-off gateway (as before flow control)",
    )
    p.add_argument("--flow-on", default="{}", help="JSON `flow:` settings ({}: the defaults)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                   help="another flow-on gateway with these `flow:` settings")  # fmt: skip
    p.add_argument("--scheduling-policy", choices=["fcfs", "priority"], default="priority")
    p.add_argument("--slots", type=int, default=32, help="fake worker: decode slots")
    p.add_argument("--step-ms", type=float, default=20.0, help="fake worker: step, one sequence")
    p.add_argument("--per-seq-ms", type=float, default=1.0, help="fake worker: per sequence")
    p.add_argument("--kv-cache-gib", type=float, default=2.0, help="vLLM (as `ragway up`)")
    p.add_argument("--worker-cpu", default="1", help="taskset CPU list for the worker, or none")
    p.add_argument("--client-cpu", default="0", help="gateways and load generator, or none")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds `running`: the worker and gateways stop too


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    results = run(args)
    name = f"flow-{args.workers}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1, default=str))
    text = flow_report.render(results, args.out / f"{name}.png")
    (args.out / f"{name}.md").write_text(text + "\n")
    print(text)
