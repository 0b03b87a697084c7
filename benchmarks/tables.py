"""Markdown tables of an overhead run: per-scenario detail, the bottleneck check, the byte
comparison, and the small formatting helpers they share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from benchmarks.stats import DIRECT, Phase, added, cpu_per, ratio, select, spread


def ms(seconds: float, digits: int = 2) -> str:
    return "–" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f} ms"


def ranged(values: Sequence[float], unit: float = 1e3, suffix: str = " ms", digits: int = 2) -> str:
    mid, low, high = values
    if math.isnan(mid):
        return "–"
    if low == high:
        return f"{mid * unit:.{digits}f}{suffix}"
    return f"{mid * unit:.{digits}f}{suffix} [{low * unit:.{digits}f}–{high * unit:.{digits}f}]"


def names(phases: Sequence[Phase]) -> list[str]:
    return list(dict.fromkeys(p["target"] for p in phases))


def concurrencies(phases: Sequence[Phase], scenario: str) -> list[int]:
    return sorted({p["concurrency"] for p in select(phases, scenario=scenario) if p["concurrency"]})


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def detail(phases: Sequence[Phase], scenario: str, rate: float = 0.0) -> str:
    """Per concurrency (or rate) and target: throughput and latency, medians over rounds."""
    streaming = scenario != "chat" and scenario != "embeddings"
    head = [
        "load",
        "target",
        "req/s",
        "× direct",
        "p50",
        "p99",
        "added p50",
        "added p99",
        "TTFT p50",
        "ITL p50",
        "chunks/s",
        "gateway CPU / req",
        "gateway CPU / chunk",
        "errors",
    ]
    rows = []
    loads = (
        [("rate", rate)] if rate else [("concurrency", c) for c in concurrencies(phases, scenario)]
    )
    for key, level in loads:
        match = {"scenario": scenario, key: level, "rate": rate if rate else 0.0}
        for name in names(phases):
            mine = select(phases, target=name, **match)
            if not mine:
                continue
            med = {
                k: spread(p[k] for p in mine)[0]
                for k in ("req_s", "e2e_p50", "e2e_p99", "ttft_p50", "itl_p50", "chunks_s")
            }
            direct = name == DIRECT
            rows.append(
                [
                    f"λ={level:g}/s" if rate else f"c={level}",
                    name,
                    f"{med['req_s']:,.0f}",
                    "1" if direct else ranged(ratio(phases, name, "req_s", **match), 1, "", 3),
                    ms(med["e2e_p50"], 3),
                    ms(med["e2e_p99"], 3),
                    "–" if direct else ranged(added(phases, name, "e2e_p50", **match), digits=3),
                    "–" if direct else ranged(added(phases, name, "e2e_p99", **match), digits=3),
                    ms(med["ttft_p50"], 3) if streaming else "–",
                    ms(med["itl_p50"], 3) if streaming else "–",
                    f"{med['chunks_s']:,.0f}",
                    "–" if direct else ms(cpu_per(mine, "requests"), 3),
                    "–" if direct or not streaming else f"{cpu_per(mine, 'chunks') * 1e6:.1f} µs",
                    str(sum(p["errors"] for p in mine)),
                ]
            )
    return table(head, rows)


def bottleneck(phases: Sequence[Phase]) -> str:
    """Is the fake worker (or the load generator) what limits a phase? Their CPU per request,
    and how busy each core was, at the highest concurrency."""
    high = concurrencies(phases, "chat")[-1]
    head = [
        "target",
        "req/s",
        "gateway core busy",
        "worker + client core busy",
        "worker CPU µs / req",
        "load generator CPU µs / req",
    ]
    rows = []
    for name in names(phases):
        mine = select(phases, target=name, scenario="chat", concurrency=high)
        elapsed = sum(p["elapsed_s"] for p in mine)
        ok = sum(p["requests"] - p["errors"] for p in mine)
        if not ok or not elapsed:
            continue
        gateway = sum(p["gateway_cpu_s"] or 0 for p in mine)
        worker, client = sum(p["worker_cpu_s"] for p in mine), sum(p["loadgen_cpu_s"] for p in mine)
        rows.append(
            [
                name,
                f"{ok / elapsed:,.0f}",
                "–" if name == DIRECT else f"{gateway / elapsed:.0%}",
                f"{(worker + client) / elapsed:.0%}",
                f"{worker / ok * 1e6:.0f}",
                f"{client / ok * 1e6:.0f}",
            ]
        )
    return f"Non-streaming chat at c={high}:\n\n" + table(head, rows)


def identity(checks: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, kinds in checks.items():
        for kind, check in kinds.items():
            verdict = "identical"
            if not check["identical"]:
                at, theirs, ours = check["first_difference"], check["direct"], check["gateway"]
                verdict = f"differs from byte {at}: direct `{theirs[:60]}` vs `{ours[:60]}`"
            rows.append([name, kind, f"{check['bytes']:,}", verdict.replace("|", "\\|")])
    return table(["gateway", "answer", "bytes", "vs direct, ids included"], rows)
