"""PNG plots of benchmark results (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; must precede pyplot's import

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from benchmarks.stats import Phase, merged_quantiles, select, spread


def _saved(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _targets(phases: Sequence[Phase]) -> list[str]:
    return list(dict.fromkeys(p["target"] for p in phases))


def _levels(phases: Sequence[Phase], scenario: str) -> list[int]:
    return sorted({p["concurrency"] for p in select(phases, scenario=scenario) if p["concurrency"]})


def latency_cdf(phases: Sequence[Phase], path: Path) -> Path:
    levels = _levels(phases, "chat")
    shown = sorted({levels[0], levels[-1]})
    fig, axes = plt.subplots(1, len(shown), figsize=(6 * len(shown), 4.2), squeeze=False)
    for axis, level in zip(axes[0], shown, strict=True):
        for name in _targets(phases):
            curve = merged_quantiles(
                select(phases, target=name, scenario="chat", concurrency=level, rate=0.0)
            )
            if curve:
                axis.plot([v * 1000 for v in curve], [q / 100 for q in range(101)], label=name)
        axis.set_xscale("log")
        axis.set_xlabel("end-to-end latency (ms, log scale)")
        axis.set_ylabel("fraction of requests")
        axis.set_title(f"non-streaming chat, concurrency {level}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    return _saved(fig, path)


def _by_level(phases: Sequence[Phase], scenario: str, key: str) -> dict[str, list[float]]:
    levels = _levels(phases, scenario)
    return {
        name: [
            spread(p[key] for p in select(phases, target=name, scenario=scenario, concurrency=c))[0]
            for c in levels
        ]
        for name in _targets(phases)
    }


def against_concurrency(
    phases: Sequence[Phase], panels: Sequence[tuple[str, str, str, float]], path: Path
) -> Path:
    """One panel per (scenario, figure key, y label, scale), a line per target."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for axis, (scenario, key, label, scale) in zip(axes[0], panels, strict=True):
        levels = _levels(phases, scenario)
        for name, values in _by_level(phases, scenario, key).items():
            axis.plot(levels, [v * scale for v in values], marker="o", label=name)
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(c) for c in levels])
        axis.set_xlabel("concurrency")
        axis.set_ylabel(label)
        axis.set_title(f"{scenario}: {label}")
        axis.grid(True, alpha=0.3)
        axis.legend()
    return _saved(fig, path)


def overhead(phases: Sequence[Phase], out: Path) -> dict[str, Path]:
    return {
        "latency CDF": latency_cdf(phases, out / "overhead-latency-cdf.png"),
        "throughput against concurrency": against_concurrency(
            phases,
            [("chat", "req_s", "requests/s", 1.0), ("chat-stream", "chunks_s", "chunks/s", 1.0)],
            out / "overhead-throughput.png",
        ),
        "TTFT against concurrency": against_concurrency(
            phases,
            [
                ("chat-stream", "ttft_p50", "TTFT p50 (ms)", 1e3),
                ("chat-stream", "ttft_p99", "TTFT p99 (ms)", 1e3),
            ],
            out / "overhead-ttft.png",
        ),
    }


def series(
    xs: Sequence[float], lines: dict[str, Sequence[float]], labels: tuple[str, str, str], path: Path
) -> Path:
    """A plain line plot (the soak's memory over time)."""
    fig, axis = plt.subplots(figsize=(8, 4))
    for name, ys in lines.items():
        axis.plot(xs, ys, label=name)
    axis.set_xlabel(labels[0])
    axis.set_ylabel(labels[1])
    axis.set_title(labels[2])
    axis.grid(True, alpha=0.3)
    axis.legend()
    return _saved(fig, path)
