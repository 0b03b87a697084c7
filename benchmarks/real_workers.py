"""Ragway in front of a real vLLM worker, against it directly, in one interleaved run (the
embedding worker's benchmark, which shares the helpers here, is in embedding_bench.py).

- `vllm`: a real vLLM CPU worker (`--worker-url`, or one started here from the prepared
  SmolLM2 checkpoint). Streaming chat at concurrency 16, `max_tokens` tokens per answer with
  `ignore_eos` (every answer the same length), direct and through ragway in alternating phases;
  output tokens/s from the answers' `usage`. Nothing is pinned: vLLM uses both cores.

    python -m benchmarks vllm [--worker-url http://127.0.0.1:8001] --rounds 2 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks import scenarios, targets
from benchmarks.loadgen import Record, Workload, closed_loop, new_session
from benchmarks.overhead import RESULTS
from benchmarks.procs import Proc, running, start, wait_ready
from benchmarks.stats import Phase, spread, summarize
from benchmarks.tables import table
from ragway import launch, weights
from ragway.stack import free_port


async def phase(base_url: str, load: Workload, concurrency: int, args: argparse.Namespace) -> Phase:
    records: list[Record] = []
    async with new_session(concurrency, read_timeout=300) as session:
        await closed_loop(
            session,
            base_url,
            load,
            concurrency=concurrency,
            duration=args.warmup,
            max_requests=1_000_000,
            sink=lambda r: None,
        )
        elapsed = await closed_loop(
            session,
            base_url,
            load,
            concurrency=concurrency,
            duration=args.duration,
            max_requests=1_000_000,
            sink=records.append,
        )
    figures = summarize(records, elapsed)
    figures.pop("e2e_quantiles")
    return figures


def rounds(runs: dict[str, Callable[[], Phase]], count: int) -> list[Phase]:
    """Each run once per round, in an order rotating between rounds."""
    names, done = list(runs), []
    for number in range(count):
        for name in names[number % len(names) :] + names[: number % len(names)]:
            print(f"round {number + 1}: {name} ...", flush=True)
            done.append({**runs[name](), "target": name, "round": number + 1})
            print(
                f"  {done[-1]['req_s']:.1f} req/s, {done[-1]['tokens_s']:.1f} tokens/s, "
                f"{done[-1]['errors']} errors",
                flush=True,
            )
    return done


def ratios(phases: list[Phase], key: str, over: str, base: str) -> tuple[float, float, float]:
    by_round: dict[int, dict[str, float]] = {}
    for p in phases:
        by_round.setdefault(p["round"], {})[p["target"]] = p[key]
    return spread(r[over] / r[base] for r in by_round.values() if over in r and base in r)


def write(name: str, results: dict[str, Any], text: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=1, default=str))
    (out / f"{name}.md").write_text(text + "\n")
    print(text)


def phase_table(phases: list[Phase], key: str, label: str) -> str:
    rows = [
        [
            str(p["round"]),
            p["target"],
            f"{p[key]:,.1f}",
            f"{p['e2e_p50'] * 1000:.1f} ms",
            str(p["errors"]),
        ]
        for p in phases
    ]
    return table(["round", "target", label, "p50 latency", "errors"], rows)


def started_vllm(args: argparse.Namespace, procs: list[Proc]) -> str:
    if args.worker_url:
        return str(args.worker_url).rstrip("/")
    port = free_port()
    model_dir = weights.prepare_chat_model(Path("~/.cache/ragway").expanduser())
    spec = launch.vllm_spec(
        model_dir,
        "smollm2-135m-instruct",
        host="127.0.0.1",
        port=port,
        kv_cache_gib=1.0,
        max_model_len=2048,
    )
    procs.append(
        start("vllm", spec.argv, log_dir=args.out / "raw" / "vllm", cpus=None, env=spec.env)
    )
    wait_ready(procs[-1], spec.ready_url, 900)
    return f"http://127.0.0.1:{port}"


def vllm(args: argparse.Namespace) -> None:
    procs: list[Proc] = []
    with running(procs):
        worker = started_vllm(args, procs)
        model = httpx.get(worker + "/v1/models", timeout=10).json()["data"][0]["id"]
        procs.append(targets.ragway(args.out / "raw" / "vllm", worker, None, kinds=("chat",)))
        load = scenarios.chat(
            model,
            stream=True,
            max_tokens=args.max_tokens,
            prompt="Tell me a long story.",
            extra={"ignore_eos": True},
        )
        runs = {
            "direct": lambda: asyncio.run(phase(worker + "/v1", load, args.concurrency, args)),
            "ragway": lambda: asyncio.run(phase(procs[-1].base_url, load, args.concurrency, args)),
        }
        phases = rounds(runs, args.rounds)
    mid, low, high = ratios(phases, "tokens_s", "ragway", "direct")
    text = "\n\n".join(
        [
            f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; model {model}, "
            f"concurrency {args.concurrency}, {args.max_tokens} tokens per answer (ignore_eos), "
            f"{args.duration:g} s per phase.",
            f"**tokens/s through ragway ÷ direct: {mid:.3f}** (rounds: {low:.3f}–{high:.3f})",
            phase_table(phases, "tokens_s", "tokens/s"),
        ]
    )
    results = {
        "benchmark": "vllm",
        "parameters": vars(args),
        "model": model,
        "ratio": {"median": mid, "min": low, "max": high},
        "phases": phases,
    }
    write("vllm", results, text, args.out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="which", required=True)
    one = sub.add_parser("vllm", help="tokens/s through ragway vs direct")
    one.add_argument("--worker-url", help="a running vLLM worker (default: start one)")
    one.add_argument("--concurrency", type=int, default=16)
    one.add_argument("--max-tokens", type=int, default=64)
    one.add_argument("--rounds", type=int, default=2)
    one.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    one.add_argument("--warmup", type=float, default=5.0)
    one.add_argument("--out", type=Path, default=RESULTS)
    vllm(parser.parse_args(argv))
