"""Gateway overhead: direct to a fake worker, through ragway, and through peer gateways (LiteLLM's
proxy, vllm-router), all in front of the same worker, in one interleaved run.

Method: the gateways run side by side, each pinned to `--gateway-cpu`; the fake worker and this
load generator share `--client-cpu`. Every phase (a scenario at one concurrency, or at one
Poisson rate) runs against each target back to back, in an order that rotates between phases
and rounds, so all targets see the same machine. Each phase has a warm-up that is not recorded.
A gateway's CPU time per request comes from its own accounting (/proc, utime + stime) over the
recorded part, so it does not depend on what else shares the box. Before the load, one
request of each kind is sent direct and through each gateway with the same `x-request-id`, and
the answers' bytes are compared.

    python -m benchmarks overhead --rounds 2 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks import identity, report, scenarios, targets, tenancy_targets
from benchmarks.loadgen import Record, Workload, closed_loop, new_session, open_loop
from benchmarks.procs import LaunchError, Proc, pin_self, running
from benchmarks.stats import DIRECT, Phase, summarize

RESULTS = Path(__file__).resolve().parent / "results"
CHAT, EMBED = "bench-chat", "bench-embed"


@dataclass
class Target:
    name: str
    base_url: str
    proc: Proc | None  # the gateway; None for direct
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Spec:
    scenario: str
    concurrency: int = 0  # closed loop
    rate: float = 0.0  # open loop (requests per second)


def workload(scenario: str, tokens: int) -> Workload:
    if scenario == "chat":
        return scenarios.chat(CHAT, stream=False, max_tokens=tokens)
    if scenario == "chat-stream":
        return scenarios.chat(CHAT, stream=True, max_tokens=tokens)
    if scenario == "multi-turn":
        return scenarios.multi_turn(CHAT, stream=True, max_tokens=min(tokens, 16))
    if scenario == "embeddings":
        return scenarios.embeddings(EMBED, scenarios.sentences(256))
    raise ValueError(f"unknown scenario {scenario!r}")


def plan(args: argparse.Namespace) -> list[Spec]:
    specs = [Spec("chat", c) for c in args.concurrency]
    specs += [Spec("chat-stream", c) for c in args.concurrency]
    specs += [Spec("multi-turn", 16), Spec("embeddings", 16)]
    specs += [Spec("chat", 0, rate) for rate in args.rate]
    return [s for s in specs if args.scenarios is None or s.scenario in args.scenarios]


async def measure(
    target: Target, spec: Spec, worker: Proc, args: argparse.Namespace, raw: list[dict[str, Any]]
) -> Phase:
    """One phase against one target: warm up, then record."""
    load = workload(spec.scenario, args.tokens)
    width = spec.concurrency or 4
    records: list[Record] = []
    async with new_session(max(width, 1024 if spec.rate else width), target.headers) as session:
        await closed_loop(
            session,
            target.base_url,
            load,
            concurrency=width,
            duration=args.warmup,
            max_requests=args.max_requests,
            sink=lambda r: None,
        )
        watched = [p for p in (target.proc, worker) if p is not None]
        for proc in watched:
            proc.refresh()
        before = [p.cpu() for p in watched], time.process_time()
        if spec.rate:
            elapsed = await open_loop(
                session,
                target.base_url,
                load,
                rate=spec.rate,
                duration=args.duration,
                max_requests=args.max_requests,
                sink=records.append,
            )
        else:
            elapsed = await closed_loop(
                session,
                target.base_url,
                load,
                concurrency=spec.concurrency,
                duration=args.duration,
                max_requests=args.max_requests,
                sink=records.append,
            )
        after = [p.cpu() for p in watched], time.process_time()
    spent = [b - a for a, b in zip(before[0], after[0], strict=True)]
    phase = summarize(records, elapsed)
    phase.update(
        target=target.name,
        scenario=spec.scenario,
        concurrency=spec.concurrency,
        rate=spec.rate,
        gateway_cpu_s=spent[0] if target.proc else None,
        worker_cpu_s=spent[-1],
        loadgen_cpu_s=after[1] - before[1],
    )
    tags = {
        "target": target.name,
        "scenario": spec.scenario,
        "concurrency": spec.concurrency,
        "rate": spec.rate,
    }
    raw.extend({**tags, **record_dict(r)} for r in records)
    return phase


def record_dict(record: Record) -> dict[str, Any]:
    return dataclasses.asdict(record)


async def run_phases(
    all_targets: list[Target], worker: Proc, args: argparse.Namespace, raw: list[dict[str, Any]]
) -> list[Phase]:
    specs = plan(args)
    phases: list[Phase] = []
    bar = tqdm(total=args.rounds * len(specs) * len(all_targets), unit="phase", desc="overhead")
    with bar:
        for number in range(args.rounds):
            for index, spec in enumerate(specs):
                shift = (number + index) % len(all_targets)
                for target in all_targets[shift:] + all_targets[:shift]:
                    what = f"c={spec.concurrency}" if spec.concurrency else f"λ={spec.rate:g}/s"
                    bar.set_postfix_str(f"round {number + 1} {spec.scenario} {what} {target.name}")
                    phase = await measure(target, spec, worker, args, raw)
                    phase["round"] = number + 1
                    phases.append(phase)
                    bar.update(1)
    return phases


@contextlib.contextmanager
def gateways(
    args: argparse.Namespace, run_dir: Path
) -> Iterator[tuple[Proc, list[Target], dict[str, str]]]:
    """The worker and every target; peers that cannot run are left out, with their error."""
    procs: list[Proc] = []
    skipped: dict[str, str] = {}
    with running(procs):
        worker = targets.fake_worker(
            run_dir,
            args.client_cpu,
            tokens=args.tokens,
            tokens_per_s=args.tokens_per_s,
            delay_ms=args.delay_ms,
        )
        procs.append(worker)
        found = [Target(DIRECT, worker.base_url, None)]
        procs.append(targets.ragway(run_dir, worker.base_url, args.gateway_cpu))
        found.append(Target("ragway", procs[-1].base_url, procs[-1]))
        for ref in args.baseline:
            name = f"ragway@{ref}"
            tree = targets.source_tree(ref)
            procs.append(
                targets.ragway(run_dir, worker.base_url, args.gateway_cpu, name=name, source=tree)
            )
            found.append(Target(name, procs[-1].base_url, procs[-1]))
        if args.flow_off:  # this tree with flow control switched off (issue 13's overhead)
            off = {"enabled": False}
            procs.append(targets.ragway(run_dir, worker.base_url, args.gateway_cpu,
                                        name="ragway-flow-off", flow=off))  # fmt: skip
            found.append(Target("ragway-flow-off", procs[-1].base_url, procs[-1]))
        found += tenancy_gateways(args, run_dir, worker, procs)
        for name in args.peers:
            try:
                if name == "litellm":
                    proc = targets.litellm(
                        run_dir, worker.base_url, args.gateway_cpu, (CHAT, EMBED)
                    )
                    headers = {"authorization": f"Bearer {targets.LITELLM_KEY}"}
                else:
                    proc, headers = (
                        targets.vllm_router(run_dir, worker.base_url, args.gateway_cpu),
                        {},
                    )
            except (targets.PeerError, LaunchError) as exc:
                skipped[name] = str(exc)
                print(f"{name}: left out of the run: {exc}")
                continue
            procs.append(proc)
            found.append(Target(name, proc.base_url, proc, headers))
        yield worker, found, skipped


def tenancy_gateways(
    args: argparse.Namespace, run_dir: Path, worker: Proc, procs: list[Proc]
) -> list[Target]:
    """`--tenancy`: this tree with auth and limits in process, and with limits in Redis (on
    the client's core)."""
    found = []
    if args.tenancy:
        headers = tenancy_targets.HEADERS
        procs.append(tenancy_targets.with_auth(run_dir, worker.base_url, args.gateway_cpu))
        found.append(Target("ragway-auth", procs[-1].base_url, procs[-1], headers))
        redis, url = tenancy_targets.redis(run_dir, args.client_cpu)
        procs.append(redis)
        procs.append(tenancy_targets.with_auth(run_dir, worker.base_url, args.gateway_cpu, url))
        found.append(Target("ragway-auth-redis", procs[-1].base_url, procs[-1], headers))
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    run_dir = args.out / "raw" / f"overhead-{stamp}"
    pin_self({int(c) for c in args.client_cpu.split(",")})
    raw: list[dict[str, Any]] = []
    with gateways(args, run_dir) as (worker, all_targets, skipped):
        checks = identity.check(
            [(t.name, t.base_url, t.headers) for t in all_targets], CHAT, args.tokens
        )
        phases = asyncio.run(run_phases(all_targets, worker, args, raw))
        peaks = {t.name: t.proc.peak_rss_kib() for t in all_targets if t.proc is not None}
        peaks[DIRECT] = worker.peak_rss_kib()
    results = {
        "benchmark": "overhead",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "peers": {name: targets.PEERS[name].requirement for name in args.peers},
        "skipped": skipped,
        "peak_rss_kib": peaks,
        "identity": checks,
        "phases": phases,
    }
    (run_dir / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in raw))
    return results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=float, default=5.0, help="recorded seconds per phase")
    p.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds per phase")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--rate", type=float, nargs="*", default=[100.0], help="open-loop λ, req/s")
    p.add_argument("--tokens", type=int, default=64, help="tokens per answer")
    p.add_argument("--tokens-per-s", type=float, default=1000.0, help="fake worker, per stream")
    p.add_argument("--delay-ms", type=float, default=0.0, help="fake worker's time to first token")
    p.add_argument("--peers", nargs="*", default=list(targets.PEERS), choices=list(targets.PEERS))
    p.add_argument(
        "--baseline",
        nargs="*",
        default=[],
        metavar="REF",
        help="also run ragway as of these git refs (before/after in one interleaved run)",
    )
    p.add_argument("--gateway-cpu", default="1", help="taskset CPU list for the gateways")
    p.add_argument("--client-cpu", default="0", help="CPU list for the worker and load generator")
    p.add_argument("--max-requests", type=int, default=200_000, help="per phase")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--scenarios", nargs="+", help="only these (chat, chat-stream, ...)")
    p.add_argument("--tenancy", action="store_true",
                   help="also run ragway with auth + limits, in process and in Redis")  # fmt: skip
    p.add_argument("--flow-off", action="store_true",
                   help="also this tree with flow control off (`ragway` has it on)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    results = run(args)
    report.write_overhead(results, args.out)
