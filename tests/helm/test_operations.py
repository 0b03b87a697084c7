"""Chart renders for safe operations: the gateway's drain fits inside the pod's grace period,
RAG uses the chart's Chroma (or an external one), and a render that would leave the gateway on
an embedded Chroma where that cannot work fails with a message. (Validated against the
Kubernetes 1.30 schemas by test_kube_schemas.py; there is no cluster here.)"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.helm.chart import NAMESPACE, RELEASE, Render, env_of, pod_spec, render, render_set


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


def _config(chart: Render) -> dict[str, Any]:
    (config,) = [o for o in chart.of_kind("ConfigMap") if "ragway.yaml" in o.get("data", {})]
    settings: dict[str, Any] = yaml.safe_load(config["data"]["ragway.yaml"])
    return settings


def test_rag_uses_the_charts_own_chroma_by_default() -> None:
    chroma = f"http://{RELEASE}-ragway-chroma.{NAMESPACE}.svc:8000"
    assert _config(render_set("defaults"))["rag"]["chroma_url"] == chroma


def test_rag_uses_an_external_chroma_with_its_token() -> None:
    external = render_set("external-chroma")
    assert _config(external)["rag"]["chroma_url"] == "http://chroma.vector-db.svc:8000"
    assert not any(o["metadata"]["name"].endswith("-chroma") for o in external.of_kind("Service"))
    chart = render(
        {
            "chroma": {
                "enabled": False,
                "externalUrl": "https://chroma.example.com",
                "auth": {"existingSecret": "chroma-token"},
            }
        }
    )
    assert _config(chart)["rag"]["chroma_url"] == "https://chroma.example.com"
    (container,) = pod_spec(_gateway_of(chart))["containers"]
    token = env_of(container)["RAGWAY_RAG__CHROMA_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "chroma-token", "key": "token"}


def test_a_chroma_url_in_the_settings_is_kept() -> None:
    chart = render({"gateway": {"config": {"rag": {"chroma_url": "http://mine:8000"}}}})
    assert _config(chart)["rag"]["chroma_url"] == "http://mine:8000"


NO_CHROMA = {"chroma": {"enabled": False}}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (NO_CHROMA, "10 replicas would each keep different knowledge bases"),
        (
            {**NO_CHROMA, "gateway": {"autoscaling": {"mode": "none"}, "replicaCount": 2}},
            "2 replicas would each keep different knowledge bases",
        ),
        (
            {**NO_CHROMA, "gateway": {"autoscaling": {"mode": "none"}, "replicaCount": 1}},
            "cannot write on a read-only root filesystem",
        ),
    ],
)
def test_embedded_chroma_where_it_cannot_work_fails_the_render(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(values)
    assert "ragway: no Chroma server for knowledge bases" in str(caught.value)
    assert message in str(caught.value)


def test_embedded_chroma_renders_for_one_replica_with_a_writable_root() -> None:
    values = {
        **NO_CHROMA,
        "gateway": {"autoscaling": {"mode": "none"}, "replicaCount": 1},
        "securityContext": {"readOnlyRootFilesystem": False},
    }
    assert "chroma_url" not in _config(render(values)).get("rag", {})


def _gateway_of(chart: Render) -> dict[str, Any]:
    (deployment,) = [
        o
        for o in chart.of_kind("Deployment")
        if o["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    ]
    return deployment
