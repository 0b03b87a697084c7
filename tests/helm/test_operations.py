"""Chart renders for safe operations: the gateway's drain fits inside the pod's grace period."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.helm.chart import pod_spec, render, render_set


def _gateway(values: dict[str, Any] | None = None) -> dict[str, Any]:
    chart = render_set("defaults") if values is None else render(values)
    (deployment,) = [
        o
        for o in chart.of_kind("Deployment")
        if o["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    ]
    return deployment


def _settings(values: dict[str, Any] | None = None) -> dict[str, Any]:
    chart = render_set("defaults") if values is None else render(values)
    (config,) = [o for o in chart.of_kind("ConfigMap") if "ragway.yaml" in o.get("data", {})]
    settings: dict[str, Any] = yaml.safe_load(config["data"]["ragway.yaml"])
    return settings


def test_gateway_leaves_endpoints_before_it_drains() -> None:
    spec = pod_spec(_gateway())
    (container,) = spec["containers"]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = _settings()["shutdown"]["grace"]
    assert sleep > 0
    assert sleep + grace + 2 < spec["terminationGracePeriodSeconds"]


def test_a_drain_longer_than_the_pod_grace_fails_the_render() -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render({"gateway": {"config": {"shutdown": {"grace": 55}}}})
    assert "must stay below gateway.terminationGracePeriodSeconds" in str(caught.value)


def test_prestop_can_be_turned_off() -> None:
    (container,) = pod_spec(_gateway({"gateway": {"preStopSleepSeconds": 0}}))["containers"]
    assert "lifecycle" not in container
