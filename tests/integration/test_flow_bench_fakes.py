"""The flow-control benchmark (benchmarks/flow_bench.py), small: the capacity-modelling fake
worker (8 decode slots, first come first served, so only the gateway can reorder), a flood of
24 long streams from the batch tenant, and the interactive tenant's chats through ragway with
flow control off and on. Flow control must put the interactive chats ahead of the queued flood.
benchmarks/README.md has the figures of the full runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import flow_bench, flow_report

pytestmark = pytest.mark.stack

SLOTS = 8


def test_flow_control_cuts_interactive_ttft_under_a_flood(tmp_path: Path) -> None:
    args = flow_bench.parser().parse_args(
        ["--workers", "fake", "--flood", "24", "--slots", str(SLOTS), "--step-ms", "10",
         "--per-seq-ms", "1", "--batch-tokens", "60", "--interactive-tokens", "4",
         "--interval", "0.5", "--duration", "5", "--alone-duration", "2", "--ramp", "2",
         "--scheduling-policy", "fcfs", "--flow-on", f'{{"max_in_flight": {SLOTS}}}',
         "--worker-cpu", "none", "--client-cpu", "none", "--out", str(tmp_path)]
    )  # fmt: skip
    results = flow_bench.run(args)
    phases = {p["gateway"] if p["flood"] else "alone": p for p in results["phases"]}
    assert set(phases) == {"alone", "flow-off", "flow-on"}
    table = flow_report.phase_table(results["phases"])
    for phase in phases.values():
        assert phase["interactive_ok"] == phase["interactive_sent"] > 0, table
        assert phase["stream_errors"] == 0, (phase["first_stream_error"], table)
    for name in ("flow-off", "flow-on"):
        assert phases[name]["batch_tokens_s"] > 0, table
        assert phases[name]["worker_running_max"] <= SLOTS, table
    # Without flow control the flood waits in the engine's queue and the interactive chats
    # wait behind it; with it, they go to the worker ahead of the queued flood.
    assert phases["flow-off"]["worker_waiting_max"] > 0, table
    assert phases["flow-on"]["ttft_p90"] < phases["flow-off"]["ttft_p90"], table
    text = flow_report.render(results, tmp_path / "flow.png")
    assert (tmp_path / "flow.png").stat().st_size > 0
    assert "flow-on" in text
    assert not math.isnan(phases["alone"]["ttft_p90"])
