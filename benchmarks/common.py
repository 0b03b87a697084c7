"""Helpers shared by the benchmarks: percentiles, reading vLLM counters, writing reports."""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def vllm_counter(worker_url: str, contains: str) -> dict[str, float]:
    """Every `vllm:` sample whose name contains `contains`, summed over label sets."""
    text = httpx.get(worker_url.rstrip("/") + "/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("vllm:") and contains in sample.name:
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


def write_report(path: Path, table: str, parameters: dict[str, Any]) -> None:
    """A Markdown fragment: the table, when and where it ran, and the parameters."""
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "parameters": parameters,
    }
    path.write_text(f"{table}\n\n```json\n{json.dumps(meta, indent=1, default=str)}\n```\n")
