"""Assertions over every value set's render: probes, images, secrets, labels, security, GPUs."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
import yaml

from tests.helm.chart import (
    RELEASE,
    VALUE_FILES,
    Manifest,
    Render,
    containers,
    env_of,
    pod_spec,
    render_set,
)

SETS = list(VALUE_FILES)
STANDARD_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
}
# "TOKENS" (a count, as in RAGWAY_EMBED_MAX_BATCH_TOKENS) is not a credential.
SECRET_NAME = re.compile(r"KEY|TOKEN(?!S$)|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)


def long_running(render: Render) -> list[Manifest]:
    return [o for o in render.workloads() if o["kind"] != "Pod"]


def component(obj: Manifest) -> str:
    label: str = obj["metadata"]["labels"]["app.kubernetes.io/component"]
    return label


@pytest.mark.parametrize("value_set", SETS)
def test_every_long_running_container_has_probes(value_set: str) -> None:
    for obj in long_running(render_set(value_set)):
        for c in containers(obj):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in c, f"{obj['metadata']['name']}/{c['name']} has no {probe}"


@pytest.mark.parametrize("value_set", SETS)
def test_probe_paths(value_set: str) -> None:
    expected = {
        "gateway": ("/healthz", "/readyz"),
        "vllm": ("/health", "/health"),
        "embedding": ("/health", "/health"),
        "chroma": ("/api/v2/heartbeat", "/api/v2/heartbeat"),
    }
    for obj in long_running(render_set(value_set)):
        (c,) = containers(obj)
        if component(obj) == "redis":  # not HTTP: a ping and a socket
            assert c["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
            continue
        live, ready = expected[component(obj)]
        assert c["livenessProbe"]["httpGet"]["path"] == live
        assert c["readinessProbe"]["httpGet"]["path"] == ready


@pytest.mark.parametrize("value_set", SETS)
def test_vllm_startup_probe_allows_a_long_load(value_set: str) -> None:
    for obj in render_set(value_set).of_kind("Deployment"):
        if component(obj) != "vllm":
            continue
        (c,) = containers(obj)
        probe = c["startupProbe"]
        assert probe["httpGet"]["path"] == "/health"
        assert probe["periodSeconds"] * probe["failureThreshold"] >= 15 * 60


@pytest.mark.parametrize("value_set", SETS)
def test_images_are_pinned(value_set: str) -> None:
    for obj in render_set(value_set).workloads():
        for c in containers(obj):
            image: str = c["image"]
            if "@sha256:" in image:
                continue
            repo, _, tag = image.rpartition(":")
            assert repo, f"{image} has no tag"
            assert "/" not in tag, f"{image} has no tag"
            assert re.search(r"\d", tag), f"{image} is not pinned to a version"


@pytest.mark.parametrize("value_set", SETS)
def test_secrets_are_referenced_not_inlined(value_set: str) -> None:
    render = render_set(value_set)
    for obj in render.workloads():
        for c in containers(obj):
            for name, var in env_of(c).items():
                if SECRET_NAME.search(name):
                    assert "value" not in var, f"{name} is inlined in {obj['metadata']['name']}"
                    assert "secretKeyRef" in var["valueFrom"], name
    secret_values = [v for s in render.of_kind("Secret") for v in s.get("data", {}).values()]
    others = [o for o in render.objects if o["kind"] != "Secret"]
    for value in secret_values:
        assert all(value not in str(o) for o in others)


@pytest.mark.parametrize("value_set", SETS)
def test_labels_are_consistent(value_set: str) -> None:
    render = render_set(value_set)
    for obj in render.objects:
        labels = obj["metadata"].get("labels", {})
        missing = STANDARD_LABELS - set(labels)
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
    for obj in long_running(render):
        selector = obj["spec"]["selector"]["matchLabels"]
        template = obj["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= template.items()
        assert selector.items() <= obj["metadata"]["labels"].items()


@pytest.mark.parametrize("value_set", SETS)
def test_every_service_selects_exactly_one_workload(value_set: str) -> None:
    render = render_set(value_set)
    templates = [o["spec"]["template"]["metadata"]["labels"] for o in long_running(render)]
    for svc in render.of_kind("Service"):
        selector = svc["spec"]["selector"]
        matches = [t for t in templates if selector.items() <= t.items()]
        assert len(matches) == 1, f"Service {svc['metadata']['name']} selects {len(matches)}"


@pytest.mark.parametrize("value_set", SETS)
def test_workload_selectors_are_disjoint(value_set: str) -> None:
    workloads = long_running(render_set(value_set))
    for a in workloads:
        for b in workloads:
            if a is b:
                continue
            selector = a["spec"]["selector"]["matchLabels"]
            labels = b["spec"]["template"]["metadata"]["labels"]
            assert not selector.items() <= labels.items(), (
                f"{a['metadata']['name']} would adopt pods of {b['metadata']['name']}"
            )


@pytest.mark.parametrize("value_set", SETS)
def test_containers_are_locked_down(value_set: str) -> None:
    for obj in render_set(value_set).workloads():
        pod = pod_spec(obj)["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] != 0
        assert pod["seccompProfile"]["type"] == "RuntimeDefault"
        for c in containers(obj):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("value_set", SETS)
def test_gpus_only_where_expected(value_set: str) -> None:
    render = render_set(value_set)
    for obj in render.workloads():
        for c in containers(obj):
            resources: dict[str, Any] = c.get("resources", {})
            gpus = resources.get("limits", {}).get("nvidia.com/gpu")
            if component(obj) != "vllm":
                assert gpus is None, f"{obj['metadata']['name']} asks for GPUs"
                continue
            tp = next(a for a in c["args"] if a.startswith("--tensor-parallel-size="))
            assert gpus == int(tp.split("=")[1])
            assert resources["requests"]["nvidia.com/gpu"] == gpus


@pytest.mark.parametrize("value_set", SETS)
def test_vllm_shm_grows_with_tensor_parallelism(value_set: str) -> None:
    for obj in render_set(value_set).of_kind("Deployment"):
        if component(obj) != "vllm":
            continue
        (c,) = containers(obj)
        gpus = c["resources"]["limits"]["nvidia.com/gpu"]
        (shm,) = [v for v in pod_spec(obj)["volumes"] if v["name"] == "shm"]
        assert shm["emptyDir"]["medium"] == "Memory"
        assert {"name": "shm", "mountPath": "/dev/shm"} in c["volumeMounts"]
        size = shm["emptyDir"]["sizeLimit"]
        assert size.endswith("Gi")
        assert int(size[:-2]) >= 2 * gpus


@pytest.mark.parametrize("value_set", SETS)
def test_config_checksum_matches_the_settings(value_set: str) -> None:
    render = render_set(value_set)
    (configmap_file,) = [f for f in render.files if f.endswith("templates/gateway/configmap.yaml")]
    digest = hashlib.sha256(render.files[configmap_file].encode()).hexdigest()
    (gateway,) = [o for o in render.of_kind("Deployment") if component(o) == "gateway"]
    assert gateway["spec"]["template"]["metadata"]["annotations"]["checksum/config"] == digest


@pytest.mark.parametrize("value_set", SETS)
def test_scaled_deployments_leave_replicas_to_the_autoscaler(value_set: str) -> None:
    render = render_set(value_set)
    scaled = {
        o["spec"]["scaleTargetRef"]["name"]
        for o in render.of_kind("HorizontalPodAutoscaler") + render.of_kind("ScaledObject")
    }
    for obj in render.of_kind("Deployment"):
        assert ("replicas" in obj["spec"]) == (obj["metadata"]["name"] not in scaled)


@pytest.mark.parametrize("value_set", SETS)
def test_network_policies_admit_the_gateway_to_every_backend(value_set: str) -> None:
    render = render_set(value_set)
    policies = {component(p): p for p in render.of_kind("NetworkPolicy")}
    backends = {component(o) for o in long_running(render)} - {"gateway"}
    assert set(policies) == backends
    for policy in policies.values():
        (rule,) = policy["spec"]["ingress"]
        gateway_peer = {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "ragway",
                    "app.kubernetes.io/instance": RELEASE,
                    "app.kubernetes.io/component": "gateway",
                }
            }
        }
        assert gateway_peer in rule["from"]


def test_defaults_render_the_full_stack() -> None:
    render = render_set("defaults")
    by_component: dict[str, list[str]] = {}
    for obj in render.objects:
        by_component.setdefault(component(obj), []).append(obj["kind"])
    assert {"Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount"} <= set(
        by_component["gateway"]
    )
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget"} <= set(by_component["gateway"])
    assert sorted(by_component["vllm"]) == [
        "Deployment",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Service",
    ]
    assert {"Deployment", "Service", "NetworkPolicy"} <= set(by_component["embedding"])
    assert {"StatefulSet", "Service", "NetworkPolicy"} <= set(by_component["chroma"])
    assert sorted(by_component["monitoring"]) == ["ConfigMap", "PrometheusRule", "ServiceMonitor"]
    assert by_component["test"] == ["Pod"]


def test_default_vllm_worker_follows_vllm_guidance() -> None:
    render = render_set("defaults")
    (vllm,) = [o for o in render.of_kind("Deployment") if component(o) == "vllm"]
    (c,) = containers(vllm)
    assert c["image"].startswith("vllm/vllm-openai:v")
    assert "--max-model-len=8192" in c["args"]
    assert "--enable-prefix-caching" in c["args"]
    assert env_of(c)["HF_HOME"]["value"].startswith("/cache/")
    assert {"name": "hf-cache", "mountPath": "/cache"} in c["volumeMounts"]
    claim = next(v for v in pod_spec(vllm)["volumes"] if v["name"] == "hf-cache")
    assert render.one("PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"])


def test_multi_model_set_renders_one_worker_per_model() -> None:
    render = render_set("multi-model-gpu")
    workers = [o for o in render.of_kind("Deployment") if component(o) == "vllm"]
    assert len(workers) == 2
    args = {o["metadata"]["name"]: containers(o).__next__()["args"] for o in workers}
    big = args[f"{RELEASE}-ragway-vllm-llama70b"]
    assert "--tensor-parallel-size=4" in big
    assert "--quantization=fp8" in big
    assert any(a.startswith("--revision=") for a in big)
    assert "--no-enable-prefix-caching" in args[f"{RELEASE}-ragway-vllm-qwen7b"]
    for obj in workers:
        spec = pod_spec(obj)
        assert spec["runtimeClassName"] == "nvidia"
        assert "nvidia.com/gpu.product" in spec["nodeSelector"]
        hf_token = env_of(spec["containers"][0])["HF_TOKEN"]
        assert hf_token["valueFrom"]["secretKeyRef"]["name"] == "hf-token"


def test_external_chroma_set_deploys_no_chroma() -> None:
    render = render_set("external-chroma")
    assert not render.of_kind("StatefulSet")
    assert "http://chroma.vector-db.svc:8000" in render.notes
    (embedding,) = [o for o in render.of_kind("Deployment") if component(o) == "embedding"]
    volumes = {v["name"]: v for v in pod_spec(embedding)["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "embedding-models"
    assert not render.of_kind("Secret"), "an existingSecret must replace the generated one"


def test_keda_set_scales_gateway_and_worker_on_queue_metrics() -> None:
    render = render_set("keda-monitoring")
    assert not render.of_kind("HorizontalPodAutoscaler")
    queries = [
        o["spec"]["triggers"][0]["metadata"]["query"] for o in render.of_kind("ScaledObject")
    ]
    assert any("ragway_requests_total" in q for q in queries)
    assert any("vllm:num_requests_waiting" in q for q in queries)
    assert render.of_kind("Role")
    assert render.of_kind("RoleBinding")
    assert render.of_kind("HTTPRoute")


def test_auth_is_on_by_default_and_the_key_file_is_mounted() -> None:
    render = render_set("defaults")
    (gateway,) = [o for o in render.of_kind("Deployment") if component(o) == "gateway"]
    (c,) = containers(gateway)
    assert {"name": "api-keys", "mountPath": "/etc/ragway-keys", "readOnly": True} in c[
        "volumeMounts"
    ]
    (configmap,) = [o for o in render.of_kind("ConfigMap") if "ragway.yaml" in o["data"]]
    settings = yaml.safe_load(configmap["data"]["ragway.yaml"])
    assert settings["auth"]["keys_file"] == "/etc/ragway-keys/keys.yaml"
    # Two gateway replicas by default: limits are shared through the chart's Redis.
    assert settings["state"]["redis_url"].startswith("redis://demo-ragway-redis.")
    assert [o["metadata"]["name"] for o in render.of_kind("StatefulSet")
            if component(o) == "redis"] == ["demo-ragway-redis"]  # fmt: skip
    (secret,) = [o for o in render.of_kind("Secret") if o["metadata"]["name"].endswith("api-keys")]
    key = base64.b64decode(secret["data"]["api-key"]).decode()
    keys_file = yaml.safe_load(base64.b64decode(secret["data"]["keys.yaml"]))
    assert keys_file["keys"][0]["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    test_pod = render.of_kind("Pod")[0]
    (smoke,) = containers(test_pod)
    assert "sk-wrong-key" in smoke["command"][-1]
