"""Broken values fail before anything reaches a cluster, with a message naming the value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from tests.helm.chart import load_values, render

BROKEN_FILE = Path(__file__).parent / "values" / "broken-values.yaml"


def test_broken_values_file_names_every_mistake() -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(load_values(BROKEN_FILE))
    message = str(caught.value)
    assert "/gateway/config" in message
    assert "read_timeout" in message
    assert "/vllm/image/tag" in message
    assert "'latest' does not match pattern" in message
    assert "/vllm/workers/0/name" in message
    assert "/vllm/workers/0/dtype" in message


SCHEMA_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"gateway": {"config": {"host": "0.0.0.0"}}}, "/gateway/config"),
    ({"gateway": {"config": {"timeouts": {"read": 0}}}}, "/gateway/config/timeouts/read"),
    ({"gateway": {"autoscaling": {"mode": "vpa"}}}, "/gateway/autoscaling/mode"),
    ({"chroma": {"image": {"tag": "stable"}}}, "/chroma/image/tag"),
    ({"vllm": {"workers": [{"name": "x"}]}}, "/vllm/workers/0"),
    ({"embedding": {"model": {"source": "s3"}}}, "/embedding/model/source"),
    ({"gatway": {}}, "gatway"),
]


@pytest.mark.parametrize(("values", "where"), SCHEMA_ERRORS)
def test_schema_rejects(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=where):
        render(values)


RWX = {"accessModes": ["ReadWriteMany"]}
CROSS_KEY_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"chroma": {"externalUrl": "http://chroma:8000"}}, "either chroma.enabled"),
    (
        {"vllm": {"workers": [{"name": "a", "model": "m"}, {"name": "a", "model": "n"}]}},
        'two workers named "a"',
    ),
    ({"vllm": {"defaults": {"replicas": 2}}}, "hfCache PVC is ReadWriteOnce"),
    ({"vllm": {"defaults": {"autoscaling": {"enabled": True}}}}, "ReadWriteOnce"),
    (
        {"vllm": {"defaults": {"hfCache": RWX, "autoscaling": {"enabled": True}}}},
        "keda.prometheusServerAddress is empty",
    ),
    ({"gateway": {"autoscaling": {"mode": "keda"}}}, "keda.prometheusServerAddress is empty"),
    ({"gateway": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}, "minReplicas is above"),
    ({"gateway": {"config": {"aliases": {"gpt-4o": "gpt-5"}}}}, 'points at "gpt-5"'),
    ({"embedding": {"model": {"source": "pvc"}}}, "pvc.claimName is empty"),
    (
        {"embedding": {"model": {"source": "pvc", "path": "/srv/m", "pvc": {"claimName": "c"}}}},
        "must be under /models/",
    ),
    ({"httpRoute": {"enabled": True}}, "needs httpRoute.parentRefs"),
    (
        {"vllm": {"workers": []}, "embedding": {"enabled": False}},
        "no workers",
    ),
    (
        {"gateway": {"extraWorkers": [{"name": "embedding", "url": "http://e:8002"}]}},
        'two gateway workers are named "embedding"',
    ),
    ({"auth": {"enabled": False}}, "Set auth.allowAnonymous: true"),
]


def test_anonymous_gateway_renders_only_when_acknowledged() -> None:
    objects = render({"auth": {"enabled": False, "allowAnonymous": True}}).objects
    assert not [o for o in objects if o["kind"] == "Secret" and "api-keys" in o["metadata"]["name"]]


@pytest.mark.parametrize(("values", "message"), CROSS_KEY_ERRORS)
def test_fail_fast(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(values)
    assert "ragway: " in str(caught.value)
    assert message in str(caught.value)
