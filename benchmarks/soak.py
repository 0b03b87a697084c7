"""Soak: a long mixed load through ragway, watching its memory and its errors.

Streaming and non-streaming chat requests alternate at `--concurrency` against the fake worker
(pinned as in the overhead run). Every `--sample-s` seconds the gateway's RSS (VmRSS, summed over
its process tree) and CPU time are read from /proc. The verdict compares the RSS after warm-up
(the mean of the samples in the warm-up's last 30 s) with the end of the run (the mean of its
last 30 s) and with the largest sample after warm-up: growth under 5 % and no errors passes.

    python -m benchmarks soak --minutes 10 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks import plots, scenarios, targets
from benchmarks.common import percentile
from benchmarks.loadgen import Record, closed_loop, new_session
from benchmarks.overhead import CHAT, RESULTS
from benchmarks.procs import Proc, pin_self, running
from benchmarks.tables import table

GROWTH_LIMIT = 0.05


@dataclass
class Tally:
    """What the soak keeps of its records: counts, a few errors, latencies per minute."""

    requests: int = 0
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    minutes: dict[int, list[float]] = field(default_factory=dict)

    def add(self, record: Record) -> None:
        self.requests += 1
        if record.error is not None:
            self.errors += 1
            if len(self.first_errors) < 10:
                self.first_errors.append(record.error)
            return
        self.minutes.setdefault(int(record.start // 60), []).append(record.e2e)


async def sample(gateway: Proc, tally: Tally, args: argparse.Namespace) -> list[dict[str, float]]:
    samples: list[dict[str, float]] = []
    t0 = time.perf_counter()
    total = args.minutes * 60
    with tqdm(total=int(total), unit="s", desc="soak") as bar:
        while (now := time.perf_counter() - t0) < total:
            gateway.refresh()
            samples.append(
                {
                    "t": now,
                    "rss_kib": gateway.rss_kib(),
                    "cpu_s": gateway.cpu(),
                    "requests": tally.requests,
                    "errors": tally.errors,
                }
            )
            bar.n = int(now)
            rss = samples[-1]["rss_kib"] / 1024
            bar.set_postfix_str(f"{tally.requests:,} req, {tally.errors} errors, RSS {rss:.1f} MiB")
            await asyncio.sleep(min(args.sample_s, max(0.0, total - now)))
        bar.n = int(total)
    return samples


async def soak(gateway: Proc, args: argparse.Namespace) -> tuple[Tally, list[dict[str, float]]]:
    tally = Tally()
    load = scenarios.alternate(
        scenarios.chat(CHAT, stream=False, max_tokens=args.tokens),
        scenarios.chat(CHAT, stream=True, max_tokens=args.tokens),
    )
    async with new_session(args.concurrency) as session:
        sampler = asyncio.create_task(sample(gateway, tally, args))
        await closed_loop(
            session,
            gateway.base_url,
            load,
            concurrency=args.concurrency,
            duration=args.minutes * 60,
            max_requests=args.max_requests,
            sink=tally.add,
        )
        samples = await sampler
    return tally, samples


def verdict(samples: list[dict[str, float]], warmup_s: float) -> dict[str, float]:
    def mean_rss(low: float, high: float) -> float:
        window = [s["rss_kib"] for s in samples if low <= s["t"] <= high]
        return statistics.fmean(window) if window else float("nan")

    end = samples[-1]["t"]
    warm = mean_rss(warmup_s - 30, warmup_s)
    after = [s["rss_kib"] for s in samples if s["t"] >= warmup_s]
    return {
        "rss_warm_kib": warm,
        "rss_end_kib": mean_rss(end - 30, end),
        "rss_max_after_warmup_kib": max(after) if after else float("nan"),
        "growth_end": mean_rss(end - 30, end) / warm - 1,
        "growth_max": (max(after) if after else float("nan")) / warm - 1,
    }


def markdown(results: dict[str, Any]) -> str:
    v, minutes = results["verdict"], results["minutes"]
    passed = v["growth_end"] < GROWTH_LIMIT and results["errors"] == 0
    rows = [
        [
            str(m["minute"] + 1),
            f"{m['requests']:,}",
            f"{m['req_s']:,.0f}",
            f"{m['p50'] * 1000:.2f} ms",
            f"{m['p99'] * 1000:.2f} ms",
        ]
        for m in minutes
    ]
    return (
        "\n\n".join(
            [
                f"Run of {results['when']}: {results['parameters']['minutes']} min at concurrency "
                f"{results['parameters']['concurrency']}, streaming and non-streaming alternating.",
                table(
                    [
                        "requests",
                        "errors",
                        "RSS after warm-up",
                        "RSS at the end",
                        "largest RSS after warm-up",
                        "growth (end)",
                        "growth (largest)",
                        "verdict",
                    ],
                    [
                        [
                            f"{results['requests']:,}",
                            str(results["errors"]),
                            f"{v['rss_warm_kib'] / 1024:.1f} MiB",
                            f"{v['rss_end_kib'] / 1024:.1f} MiB",
                            f"{v['rss_max_after_warmup_kib'] / 1024:.1f} MiB",
                            f"{v['growth_end']:+.2%}",
                            f"{v['growth_max']:+.2%}",
                            "pass" if passed else "**fail**",
                        ]
                    ],
                ),
                "Per minute (end-to-end latency, both kinds together):",
                table(["minute", "requests", "req/s", "p50", "p99"], rows),
                "![gateway RSS over the soak](soak-rss.png)",
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup-minutes", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--tokens-per-s", type=float, default=1000.0)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=10_000_000)
    parser.add_argument("--gateway-cpu", default="1")
    parser.add_argument("--client-cpu", default="0")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    pin_self({int(c) for c in args.client_cpu.split(",")})
    procs: list[Proc] = []
    with running(procs):
        procs.append(
            targets.fake_worker(
                args.out / "raw" / "soak",
                args.client_cpu,
                tokens=args.tokens,
                tokens_per_s=args.tokens_per_s,
                delay_ms=0,
            )
        )
        procs.append(targets.ragway(args.out / "raw" / "soak", procs[0].base_url, args.gateway_cpu))
        tally, samples = asyncio.run(soak(procs[1], args))
    write(args, tally, samples)


def write(args: argparse.Namespace, tally: Tally, samples: list[dict[str, float]]) -> None:
    minutes = [
        {
            "minute": m,
            "requests": len(v),
            "req_s": len(v) / max(1.0, min(60.0, args.minutes * 60 - m * 60)),
            "p50": percentile(v, 50),
            "p99": percentile(v, 99),
        }
        for m, v in sorted(tally.minutes.items())
    ]
    results = {
        "benchmark": "soak",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "requests": tally.requests,
        "errors": tally.errors,
        "first_errors": tally.first_errors,
        "verdict": verdict(samples, args.warmup_minutes * 60),
        "minutes": minutes,
        "samples": samples,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(results, indent=1))
    plots.series(
        [s["t"] / 60 for s in samples],
        {"ragway RSS (MiB)": [s["rss_kib"] / 1024 for s in samples]},
        ("minutes", "MiB", "gateway RSS during the soak"),
        args.out / "soak-rss.png",
    )
    (args.out / "soak.md").write_text(markdown(results))
    print(f"wrote {args.out / 'soak.md'}: {results['verdict']}, errors {tally.errors}")
