"""From per-request records to a phase's figures, and from phases to comparisons across
targets: medians over rounds with their spread, and differences against the direct target
measured in the same round."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from benchmarks.common import percentile
from benchmarks.loadgen import Record

Phase = dict[str, Any]  # one phase's figures, as stored in the results JSON
DIRECT = "direct"


def quantiles(values: Sequence[float]) -> list[float]:
    """The 0th..100th nearest-rank percentiles: enough to draw a CDF."""
    if not values:
        return []
    ordered = sorted(values)
    last = len(ordered) - 1
    return [ordered[min(last, max(0, math.ceil(q / 100 * len(ordered)) - 1))] for q in range(101)]


def summarize(records: Sequence[Record], elapsed: float) -> Phase:
    """A phase's figures; latencies in seconds."""
    ok = [r for r in records if r.ok]
    e2e = [r.e2e for r in ok]
    ttft = [r.ttft for r in ok if not math.isnan(r.ttft)]
    itl = [gap for r in ok for gap in r.itl]
    errors = [r.error for r in records if r.error is not None]
    return {
        "requests": len(records),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "elapsed_s": elapsed,
        "req_s": len(ok) / elapsed if elapsed > 0 else math.nan,
        "tokens_s": sum(r.tokens for r in ok) / elapsed if elapsed > 0 else math.nan,
        "chunks_s": sum(r.chunks for r in ok) / elapsed if elapsed > 0 else math.nan,
        "chunks": sum(r.chunks for r in ok),
        "e2e_mean": statistics.fmean(e2e) if e2e else math.nan,
        "e2e_p50": percentile(e2e, 50),
        "e2e_p90": percentile(e2e, 90),
        "e2e_p99": percentile(e2e, 99),
        "ttft_p50": percentile(ttft, 50),
        "ttft_p99": percentile(ttft, 99),
        "itl_p50": percentile(itl, 50),
        "itl_p99": percentile(itl, 99),
        "e2e_quantiles": quantiles(e2e),
    }


def spread(values: Iterable[float]) -> tuple[float, float, float]:
    """(median, min, max), NaN-free; all NaN when there is nothing."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return (math.nan, math.nan, math.nan)
    return (statistics.median(clean), min(clean), max(clean))


def select(phases: Sequence[Phase], **match: Any) -> list[Phase]:
    return [p for p in phases if all(p.get(k) == v for k, v in match.items())]


def per_round(
    phases: Sequence[Phase], target: str, figure: Callable[[Phase, Phase], float], **match: Any
) -> list[float]:
    """figure(target's phase, direct's phase) for each round in which both ran."""
    direct = {p["round"]: p for p in select(phases, target=DIRECT, **match)}
    return [
        figure(p, direct[p["round"]])
        for p in select(phases, target=target, **match)
        if p["round"] in direct
    ]


def added(phases: Sequence[Phase], target: str, key: str, **match: Any) -> tuple[float, ...]:
    """Target minus direct, per round, then (median, min, max)."""
    return spread(per_round(phases, target, lambda p, d: p[key] - d[key], **match))


def ratio(phases: Sequence[Phase], target: str, key: str, **match: Any) -> tuple[float, ...]:
    """Target over direct, per round, then (median, min, max)."""
    return spread(per_round(phases, target, lambda p, d: p[key] / d[key], **match))


def cpu_per(phases: Sequence[Phase], unit: str, who: str = "gateway_cpu_s") -> float:
    """CPU seconds per request (`unit`="requests") or per chunk ("chunks"), pooled."""
    spent = sum(p[who] for p in phases if p.get(who) is not None)
    done = sum(p[unit] - (p["errors"] if unit == "requests" else 0) for p in phases)
    return spent / done if done else math.nan


def merged_quantiles(phases: Sequence[Phase]) -> list[float]:
    """The rounds' latency quantiles averaged point by point (a Vincentized CDF)."""
    curves = [p["e2e_quantiles"] for p in phases if p.get("e2e_quantiles")]
    return [statistics.fmean(points) for points in zip(*curves, strict=True)] if curves else []
