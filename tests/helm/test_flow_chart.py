"""vLLM workers run priority scheduling exactly when the gateway sets `priority` from bands, and
decode at once as many sequences as the gateway admits to each of them (flow.max_in_flight)."""

from __future__ import annotations

from typing import Any

import yaml

from server.settings import FlowSettings
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


def _flow(values: dict[str, Any] | None = None) -> dict[str, Any]:
    (configmap,) = [
        o for o in render(values).of_kind("ConfigMap") if "ragway.yaml" in o.get("data", {})
    ]
    flow: dict[str, Any] = yaml.safe_load(configmap["data"]["ragway.yaml"])["flow"]
    return flow


def _worker(name: str, served: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "model": f"org/{served}", "servedModelName": served, **more}


def test_vllm_decodes_as_many_sequences_as_the_gateway_admits_by_default() -> None:
    flow = _flow()
    assert flow["max_in_flight"] == 128 == FlowSettings().max_in_flight
    assert flow["models"] == {}  # nothing differs: no override
    for args in _vllm_args():
        assert "--max-num-seqs=128" in args


def test_a_worker_with_its_own_max_num_seqs_sets_its_models_in_flight_limit() -> None:
    workers = [
        _worker("a", "big", maxNumSeqs=256),
        _worker("b", "big", maxNumSeqs=192),  # the smallest of a model's workers
        _worker("c", "same"),
        _worker("d", "mine", maxNumSeqs=64),
    ]
    models = {"mine": {"max_in_flight": 32}}  # set in the settings: kept
    values = {"vllm": {"workers": workers}, "gateway": {"config": {"flow": {"models": models}}}}
    assert _flow(values)["models"] == {"big": {"max_in_flight": 192}, "mine": {"max_in_flight": 32}}
    assert sorted(a for args in _vllm_args(values) for a in args if "max-num-seqs" in a) == [
        "--max-num-seqs=128", "--max-num-seqs=192", "--max-num-seqs=256", "--max-num-seqs=64"
    ]  # fmt: skip


def test_no_in_flight_limit_stays_no_limit() -> None:
    values = {
        "vllm": {"workers": [_worker("a", "big", maxNumSeqs=256)]},
        "gateway": {"config": {"flow": {"max_in_flight": 0}}},
    }
    assert _flow(values)["models"] == {}
