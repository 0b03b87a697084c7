"""The chart and server.settings cannot drift apart.

The settings file every value set renders loads through `RagwaySettings.load`, the very path the
gateway takes at start-up; the values schema offers exactly the class's keys; the chart's
defaults are the class's defaults; and the embedding worker's environment builds its settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from server.settings import RagwaySettings, WorkerSettings
from tests.helm.chart import CHART_DIR, RELEASE, VALUE_FILES, containers, render_set
from workers.embedding.settings import EmbeddingWorkerSettings

# Keys the chart sets itself rather than taking from `gateway.config`.
CHART_OWNED = {"host", "port", "workers", "discovery"}
# WorkerSettings.api_key is a secret: a ConfigMap must not carry it, so extraWorkers cannot set it.
WORKER_KEYS_NOT_IN_VALUES = {"api_key"}
# Gateway env vars the chart sets ahead of the settings that will read them.
PENDING_ENV: dict[str, str] = {}


def settings_text(value_set: str) -> str:
    (configmap,) = [
        o for o in render_set(value_set).of_kind("ConfigMap") if "ragway.yaml" in o["data"]
    ]
    text: str = configmap["data"]["ragway.yaml"]
    return text


@pytest.mark.parametrize("value_set", list(VALUE_FILES))
def test_rendered_settings_load(value_set: str, tmp_path: Path) -> None:
    path = tmp_path / "ragway.yaml"
    path.write_text(settings_text(value_set))
    settings = RagwaySettings.load(path)
    assert settings.host == "0.0.0.0"
    assert settings.port == 8000
    rendered = yaml.safe_load(settings_text(value_set))
    assert len(settings.workers) == len(rendered["workers"])
    for worker in settings.workers:
        assert worker.api_key is None


def test_kubernetes_discovery_mode_renders_the_watcher_settings(tmp_path: Path) -> None:
    path = tmp_path / "ragway.yaml"
    path.write_text(settings_text("keda-monitoring"))
    settings = RagwaySettings.load(path)
    assert settings.discovery.mode == "kubernetes"
    selector = settings.discovery.kubernetes.label_selector
    assert selector == {"app.kubernetes.io/instance": RELEASE}
    # The vLLM workers are discovered, not listed; the embedding worker stays static.
    assert [w.kind.value for w in settings.workers] == ["embedding"]


@pytest.mark.parametrize("value_set", list(VALUE_FILES))
def test_gateway_env_is_known_to_the_settings(value_set: str) -> None:
    fields = {f"RAGWAY_{name.upper()}" for name in RagwaySettings.model_fields}
    known = fields | {"RAGWAY_CONFIG_FILE"} | set(PENDING_ENV)
    for obj in render_set(value_set).of_kind("Deployment"):
        if obj["metadata"]["labels"]["app.kubernetes.io/component"] != "gateway":
            continue
        for c in containers(obj):
            names = {e["name"] for e in c.get("env", []) if e["name"].startswith("RAGWAY_")}
            assert names <= known, names - known


def test_pending_env_is_still_pending() -> None:
    """Once the settings read a pending variable, drop it from PENDING_ENV, check its format."""
    fields = {f"RAGWAY_{name.upper()}" for name in RagwaySettings.model_fields}
    assert not set(PENDING_ENV) & fields


def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
    return loaded


def _assert_same_keys(model: type[BaseModel], schema: dict[str, Any], skip: set[str]) -> None:
    fields = set(model.model_fields) - skip
    assert set(schema["properties"]) == fields, f"{model.__name__}: schema and class differ"
    assert schema["additionalProperties"] is False
    for name in fields:
        annotation = model.model_fields[name].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _assert_same_keys(annotation, schema["properties"][name], set())


def test_values_schema_offers_exactly_the_settings_keys() -> None:
    gateway = _schema()["properties"]["gateway"]["properties"]
    _assert_same_keys(RagwaySettings, gateway["config"], CHART_OWNED)
    _assert_same_keys(WorkerSettings, gateway["extraWorkers"]["items"], WORKER_KEYS_NOT_IN_VALUES)


def test_chart_defaults_are_the_settings_defaults() -> None:
    chart = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["gateway"]["config"]
    code = RagwaySettings.model_construct().model_dump(mode="json")
    assert {k: code[k] for k in chart} == chart


@pytest.mark.parametrize("value_set", list(VALUE_FILES))
def test_embedding_env_builds_the_worker_settings(value_set: str) -> None:
    """The RAGWAY_EMBED_* variables the chart sets are fields of the worker's settings, with
    values they accept."""
    prefix = "RAGWAY_EMBED_"
    for obj in render_set(value_set).of_kind("Deployment"):
        if obj["metadata"]["labels"]["app.kubernetes.io/component"] != "embedding":
            continue
        (c,) = containers(obj)
        env = {
            e["name"].removeprefix(prefix).lower(): e["value"]
            for e in c["env"]
            if e["name"].startswith(prefix)
        }
        assert set(env) <= set(EmbeddingWorkerSettings.model_fields)
        settings = EmbeddingWorkerSettings(**env)
        assert str(settings.model_dir) == env["model_dir"]
