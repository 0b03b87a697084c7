"""vLLM workers run priority scheduling exactly when the gateway sets `priority` from bands."""

from __future__ import annotations

from typing import Any

from tests.helm.chart import containers, render


def _vllm_args(values: dict[str, Any] | None = None) -> list[list[str]]:
    found = []
    for obj in render(values).of_kind("Deployment"):
        if obj["metadata"]["labels"]["app.kubernetes.io/component"] == "vllm":
            found += [list(c.get("args", [])) for c in containers(obj)]
    assert found
    return found


def test_vllm_workers_schedule_by_priority_by_default() -> None:
    for args in _vllm_args():
        assert "--scheduling-policy=priority" in args


def test_engine_priority_off_leaves_vllm_first_come_first_served() -> None:
    values = {"gateway": {"config": {"flow": {"engine_priority": False}}}}
    for args in _vllm_args(values):
        assert not any(a.startswith("--scheduling-policy") for a in args)
