"""The attack suite (benchmarks/attack.py) against a real gateway process in front of the fake
worker: every case that needs no vLLM. Timing bounds are generous (CI is a loaded 2-core
machine); benchmarks/README.md has the figures of a run against `ragway up`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import attack, attack_cases, targets
from benchmarks.procs import Proc, running

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    run_dir: Path = tmp_path_factory.mktemp("attack")
    procs: list[Proc] = []
    with running(procs):
        worker = targets.fake_worker(run_dir, None, tokens=8, tokens_per_s=0, delay_ms=0)
        procs.append(worker)
        gateway = targets.ragway(
            run_dir,
            worker.base_url,
            None,
            # Default limits: the slow-client cases end by the pressure rule, not a timeout.
            rag={"data_dir": str(run_dir / "data")},
        )
        procs.append(gateway)
        yield gateway


def test_every_case_is_refused_quickly_and_cheaply(gateway: Proc) -> None:
    url = gateway.base_url.removesuffix("/v1")
    target = attack.Target(url, gateway.process.pid, embedding_model="bench-embed")
    outcomes = asyncio.run(attack.run_all(target))
    assert target.kb is not None, "the suite's knowledge base was not created"
    assert len(outcomes) == len(attack_cases.CASES)
    report = "\n".join(attack.table_row(o) for o in outcomes)
    for o in outcomes:
        case = next(c for c in attack_cases.CASES if c.name == o.case)
        assert case.accepts(o.answer), report
        assert o.seconds <= max(5 * o.limit_s, 5), report
        assert o.rss_growth_mib < 50, report
        assert o.worst_healthz_ms < 2000, report
