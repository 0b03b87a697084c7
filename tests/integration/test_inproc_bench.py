"""The in-process A/B benchmark (benchmarks/inproc.py), small: this tree with auth off, with
auth and four limits and with flow control off, the app called in process against the fake
worker, one short try each at two concurrencies. Every try must have sent its chats (a chat
that fails stops the try) and reported the CPU it spent; the report names every target."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import inproc

pytestmark = pytest.mark.stack


def test_inproc_prices_each_target_per_request(tmp_path: Path) -> None:
    args = inproc.parser().parse_args(
        ["--auth", "--flow-off", "--tries", "1", "--requests", "120", "--warmup", "20",
         "--concurrency", "1", "4", "--gateway-cpu", "none", "--worker-cpu", "none",
         "--out", str(tmp_path)]
    )  # fmt: skip
    args.gateway_cpu = args.worker_cpu = None
    results = inproc.run(args)
    assert results["targets"] == ["ragway", "ragway-auth", "ragway-flow-off"]
    for name in results["targets"]:
        for concurrency in (1, 4):
            (one,) = results["tries"][name][concurrency]
            assert one["requests"] == 120
            assert one["cpu_us"] > 0
            assert one["wall_us"] > 0
    rows = inproc.summary(results)
    assert rows["ragway"]["1"]["ratio"] == 1.0
    text = inproc.render(results)
    assert "**ragway-auth**" in text
    assert "÷ ragway" in text
