"""The overhead run's report: JSON (everything), a Markdown page of tables, and PNG plots.

Every figure that compares a gateway with the direct path is computed per round (both measured
in that round, back to back) and given as the median over rounds with [min–max] across them.

    python -m benchmarks report benchmarks/results/overhead.json   # re-render from the JSON
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import plots
from benchmarks.stats import DIRECT, Phase, added, cpu_per, select, spread
from benchmarks.tables import (
    bottleneck,
    concurrencies,
    detail,
    identity,
    ms,
    names,
    ranged,
    table,
)

TARGETS = {
    "chat-latency-c1": 0.5e-3,
    "chat-latency-cmax": 5e-3,
    "cpu-request": 0.3e-3,
    "cpu-chunk": 25e-6,
}


def summary_rows(phases: Sequence[Phase], peaks: dict[str, int]) -> list[list[str]]:
    levels = concurrencies(phases, "chat")
    low, high = levels[0], levels[-1]
    rows = []
    for name in names(phases):
        chat = select(phases, target=name, scenario="chat", rate=0.0)
        stream = select(phases, target=name, scenario="chat-stream")
        best = max(spread(p["req_s"] for p in select(chat, concurrency=c))[0] for c in levels)
        best_chunks = max(
            spread(p["chunks_s"] for p in select(stream, concurrency=c))[0] for c in levels
        )
        if name == DIRECT:
            lat = [
                f"({ms(spread(p[k] for p in select(chat, concurrency=c))[0], 3)})"
                for c in (low, high)
                for k in ("e2e_p50", "e2e_p99")
            ]
        else:
            lat = [
                ranged(added(phases, name, k, scenario="chat", concurrency=c, rate=0.0), digits=3)
                for c in (low, high)
                for k in ("e2e_p50", "e2e_p99")
            ]
        cpu_req = cpu_per(chat, "requests")
        # A chunk costs most when it is read alone (low concurrency); pooled, reads coalesce.
        cpu_chunk = (cpu_per(select(stream, concurrency=low), "chunks"), cpu_per(stream, "chunks"))
        rows.append(
            [
                f"**{name}**",
                *lat,
                f"{best:,.0f}",
                f"{best_chunks:,.0f}",
                f"{cpu_req * 1000:.2f}" if name != DIRECT else "–",
                f"{cpu_chunk[0] * 1e6:.0f} · {cpu_chunk[1] * 1e6:.0f}" if name != DIRECT else "–",
                f"{peaks.get(name, 0) / 1024:.0f}",
            ]
        )
    return rows


def summary(results: dict[str, Any]) -> str:
    phases = results["phases"]
    levels = concurrencies(phases, "chat")
    low, high = levels[0], levels[-1]
    head = [
        "target",
        f"added p50, c={low}",
        f"added p99, c={low}",
        f"added p50, c={high}",
        f"added p99, c={high}",
        "max req/s",
        "max chunks/s",
        "CPU s / 1,000 req",
        f"CPU µs / chunk, c={low} · all",
        "peak RSS MiB",
    ]
    return table(head, summary_rows(phases, results.get("peak_rss_kib", {})))


def acceptance(results: dict[str, Any], gateway: str = "ragway") -> str:
    phases = results["phases"]
    levels = concurrencies(phases, "chat")
    chat = select(phases, target=gateway, scenario="chat", rate=0.0)
    figures = [
        (
            f"added p50, non-streaming, c={levels[0]}",
            "≤ 0.5 ms",
            added(phases, gateway, "e2e_p50", scenario="chat", concurrency=levels[0], rate=0.0)[0],
            TARGETS["chat-latency-c1"],
            1e3,
            "ms",
        ),
        (
            f"added p50, non-streaming, c={levels[-1]}",
            "≤ 5 ms",
            added(phases, gateway, "e2e_p50", scenario="chat", concurrency=levels[-1], rate=0.0)[0],
            TARGETS["chat-latency-cmax"],
            1e3,
            "ms",
        ),
        (
            "gateway CPU per non-streaming request",
            "≤ 0.3 ms",
            cpu_per(chat, "requests"),
            TARGETS["cpu-request"],
            1e3,
            "ms",
        ),
    ]
    stream = select(phases, target=gateway, scenario="chat-stream")
    alone = select(stream, concurrency=levels[0])
    for label, mine in ((f"c={levels[0]}, every event read alone", alone),
                        ("all streaming phases pooled", stream)):  # fmt: skip
        chunk = cpu_per(mine, "chunks")
        figures.append((f"gateway CPU per relayed stream chunk, {label}", "≤ 25 µs", chunk,
                        TARGETS["cpu-chunk"], 1e6, "µs"))  # fmt: skip
    rows = [
        [what, goal, f"{value * unit:.3g} {suffix}", "met" if value <= limit else "**missed**"]
        for what, goal, value, limit, unit, suffix in figures
    ]
    same = all(c["identical"] for c in results["identity"].get(gateway, {}).values())
    rows.append(
        [
            "stream and JSON bytes, ids included",
            "identical to the worker's",
            "identical" if same else "different",
            "met" if same else "**missed**",
        ]
    )
    return table(["criterion", "target", "measured", ""], rows)


def paired_cpu(phases: Sequence[Phase]) -> str:
    """Gateway CPU per non-streaming request (closed loop, as the summary's) of each gateway as
    a ratio to each baseline
    (`ragway@REF` targets, else `ragway`), phase by phase and round by round: the two ran back
    to back, so what the machine did between rounds cancels. The median of those paired ratios
    [min–max] beside the pooled one (all CPU over all requests)."""
    closed = select(phases, scenario="chat", rate=0.0)
    chat = [p for p in closed if p.get("gateway_cpu_s") and p["requests"]]
    per = {
        (p["concurrency"], p["rate"], p["round"], p["target"]): p["gateway_cpu_s"] / p["requests"]
        for p in chat
    }
    gateways = [n for n in names(chat) if n != DIRECT]
    baselines = [n for n in gateways if n.startswith("ragway@")] or ["ragway"]
    rows = []
    for base in (b for b in baselines if b in gateways):
        for name in (n for n in gateways if n != base):
            ratios = [
                per[(*cell[:3], name)] / cost
                for cell, cost in per.items()
                if cell[3] == base and (*cell[:3], name) in per
            ]
            mid, low, high = spread(ratios)
            pooled = cpu_per(select(chat, target=name), "requests") / cpu_per(
                select(chat, target=base), "requests"
            )
            rows.append([f"**{name}**", base, f"{mid:.3f} [{low:.2f}–{high:.2f}]",
                         f"{pooled:.3f}", str(len(ratios))])  # fmt: skip
    head = ["gateway", "against", "paired ratio, median [min–max]", "pooled ratio", "pairs"]
    return table(head, rows)


def markdown(results: dict[str, Any], out: Path) -> str:
    phases = results["phases"]
    parts = [
        f"Run of {results['when']} ({len({p['round'] for p in phases})} rounds); "
        f"parameters: `{json.dumps(results['parameters'], default=str)}`",
        "### Summary (non-streaming chat latency, added = gateway − direct per round)",
        summary(results),
        "### Acceptance (ragway)",
        acceptance(results),
        "### Gateway CPU per non-streaming request, paired by phase and round",
        paired_cpu(phases),
        "### Bytes relayed",
        identity(results["identity"]),
        "### Is the fake worker the bottleneck?",
        bottleneck(phases),
    ]
    for scenario in ("chat", "chat-stream", "multi-turn", "embeddings"):
        parts += [f"### {scenario}", detail(phases, scenario)]
    for rate in sorted({p["rate"] for p in phases if p["rate"]}):
        parts += [f"### chat, open loop at λ={rate:g}/s", detail(phases, "chat", rate)]
    if results.get("skipped"):
        parts += ["### Left out", *(f"- {n}: `{e}`" for n, e in results["skipped"].items())]
    parts += [f"![{name}]({path.name})" for name, path in plots.overhead(phases, out).items()]
    return "\n\n".join(parts) + "\n"


def write_overhead(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "overhead.md").write_text(markdown(results, out))
    print(f"wrote {out / 'overhead.json'}, {out / 'overhead.md'} and the plots")


def main(argv: list[str] | None = None) -> None:
    path = Path((argv or [str(Path(__file__).parent / "results" / "overhead.json")])[0])
    results = json.loads(path.read_text())
    (path.parent / "overhead.md").write_text(markdown(results, path.parent))
