"""The flow-control benchmark's report: a table per phase, the two acceptance ratios, and a PNG
(interactive TTFT over time, batch tokens/s over time, one line per phase)."""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from benchmarks.tables import table

Phase = dict[str, Any]
SMOOTH_S = 10  # seconds averaged in the throughput plot


def _s(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f} s"


def _ttft(phase: Phase, key: str) -> str:
    """The percentile, or when no interactive chat was answered, how long they waited."""
    failed_after = phase.get("interactive_failed_after_p50", math.nan)
    if math.isnan(phase[key]) and not math.isnan(failed_after):
        return f"none answered (gave up or refused after {failed_after:.1f} s, p50)"
    return _s(phase[key])


def _rejections(phase: Phase) -> str:
    found = phase["rejections"]
    return ", ".join(f"{k}: {v}" for k, v in sorted(found.items())) if found else "none"


def one_line(p: Phase) -> str:
    return (
        f"interactive {p['interactive_ok']}/{p['interactive_sent']} ok, TTFT p50 "
        f"{_s(p['ttft_p50'])} p90 {_s(p['ttft_p90'])}; batch {p['batch_completed']} done, "
        f"{p['batch_tokens_s']:.1f} tokens/s ({p.get('batch_tokens_per_chunk', 0):.1f} per "
        f"chunk); rejections {_rejections(p)}; worker waiting "
        f"max {p['worker_waiting_max']:g}, running max {p['worker_running_max']:g}; CPU "
        f"(cores) {_cores(p)}"
    )


def _cores(p: Phase) -> str:
    found = p.get("cpu_cores") or {}
    return ", ".join(f"{k} {v:.2f}" for k, v in found.items()) or "–"


def phase_table(phases: Sequence[Phase]) -> str:
    rows = [
        [
            p["phase"],
            f"{p['interactive_ok']}/{p['interactive_sent']}",
            _ttft(p, "ttft_p50"),
            _ttft(p, "ttft_p90"),
            str(p["batch_completed"]),
            f"{p['batch_tokens_s']:.1f}" if p["flood"] else "–",
            _rejections(p),
            f"{p['worker_waiting_max']:g} / {p['worker_running_max']:g}",
            " / ".join(f"{v:.2f}" for v in (p.get("cpu_cores") or {}).values()) or "–",
        ]
        for p in phases
    ]
    head = ["phase", "interactive ok", "TTFT p50", "TTFT p90", "batch done",
            "batch tokens/s", "rejections (status reason: count)",
            "worker waiting / running, max",
            "CPU, cores: gateway / worker / its children / load generator"]  # fmt: skip
    return table(head, rows)


def _median(phases: Sequence[Phase], gateway: str, key: str, flooded: bool = True) -> float:
    values = [p[key] for p in phases if p["gateway"] == gateway and bool(p["flood"]) == flooded]
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def acceptance(phases: Sequence[Phase]) -> dict[str, float]:
    """Issue 13's two targets, for every flow-on gateway (medians over rounds)."""
    alone = _median(phases, "flow-on", "ttft_p90", flooded=False)
    off_tokens = _median(phases, "flow-off", "batch_tokens_s")
    found: dict[str, float] = {
        "alone_ttft_p90": alone,
        "off_batch_tokens_s": off_tokens,
        "off_ttft_p90_x": _median(phases, "flow-off", "ttft_p90") / alone,
    }
    for gateway in dict.fromkeys(p["gateway"] for p in phases if p["flood"]):
        if gateway != "flow-off":
            found[f"{gateway}_ttft_p90_x"] = _median(phases, gateway, "ttft_p90") / alone
            found[f"{gateway}_batch_share"] = (
                _median(phases, gateway, "batch_tokens_s") / off_tokens
            )
    return found  # fmt: skip


def _verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def _times(value: float) -> str:
    return "no interactive chat answered" if math.isnan(value) else f"{value:.2f}x alone"


def summary(phases: Sequence[Phase]) -> str:
    got = acceptance(phases)
    lines = [f"Interactive TTFT p90 alone: {_s(got['alone_ttft_p90'])}; under the flood with "
             f"flow control off: {_times(got['off_ttft_p90_x'])}."]  # fmt: skip
    for key, value in got.items():
        if key.endswith("_ttft_p90_x") and not key.startswith("off"):
            gateway = key.removesuffix("_ttft_p90_x")
            share = got[f"{gateway}_batch_share"]
            lines.append(
                f"- {gateway}: interactive TTFT p90 under the flood {_times(value)} (target "
                f"≤ 3x: {_verdict(value <= 3)}); batch tokens/s {share:.2f}x flow off (target "
                f"≥ 0.80x: {_verdict(share >= 0.8)})"
            )
    return "\n".join(lines)


def _rolling_mean(values: Sequence[float], width: int) -> list[float]:
    """Each second's mean over the `width` seconds around it: coalesced streams that started
    together send their chunks in the same engine step, so per second they come in bursts."""
    half = width // 2
    return [
        sum(values[max(0, i - half) : i + half + 1]) / len(values[max(0, i - half) : i + half + 1])
        for i in range(len(values))
    ]


def plot(phases: Sequence[Phase], path: Path) -> Path:
    fig = Figure(figsize=(12, 4.4))
    left, right = fig.subplots(1, 2)
    for number, p in enumerate(phases):
        color = f"C{number % 10}"  # one colour per phase in both panels
        series = [(t, v) for t, v in p["ttft_series"] if not math.isnan(v)]
        if series:
            left.plot(*zip(*series, strict=True), marker="o", markersize=3, label=p["phase"],
                      color=color)  # fmt: skip
        if p["flood"]:
            smooth = _rolling_mean(p["batch_token_series"], SMOOTH_S)
            right.plot(range(len(smooth)), smooth, label=p["phase"], color=color)
    windows = [p["window"] for p in phases if p["flood"]]
    if windows:
        right.axvspan(*windows[0], alpha=0.08, color="grey", label="recorded window")
    left.set_yscale("log")
    left.set_xlabel("seconds into the phase (request sent)")
    left.set_ylabel("interactive TTFT (s, log scale)")
    left.set_title("interactive tenant: time to first token")
    right.set_xlabel("seconds into the phase")
    right.set_ylabel(f"batch tokens/s ({SMOOTH_S} s mean)")
    right.set_title("batch tenant: throughput")
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> None:
    """Re-render Markdown and PNG from a run's JSON: `python -m benchmarks.flow_report X.json`."""
    for name in argv if argv is not None else sys.argv[1:]:
        path = Path(name)
        results = json.loads(path.read_text())
        path.with_suffix(".md").write_text(render(results, path.with_suffix(".png")) + "\n")


def render(results: dict[str, Any], png: Path) -> str:
    phases = results["phases"]
    params = results["parameters"]
    machine = results["machine"]
    load = "/".join(f"{x:.1f}" for x in machine["load_before"])
    head = (
        f"Run of {results['when']} on {machine['cpu']}, {machine['cores']} cores (load average "
        f"{load} before the run), workers `{params['workers']}`: flood of {params['flood']} "
        f"batch streams of {params['batch_tokens']} tokens, interactive chat of "
        f"{params['interactive_tokens']} tokens every {params['interval']:g} s, "
        f"{params['duration']:g} s recorded per flood phase after {params['ramp']:g} s of ramp."
    )
    plot(phases, png)
    return "\n\n".join([head, phase_table(phases), summary(phases), f"![flow]({png.name})"])


if __name__ == "__main__":
    main()
