"""Offline renders of deploy/helm/ragway through Helm's own library (helm-python-sdk).

No helm binary, cluster or network: `helm_python` binds Helm v4's Go SDK, so lint, values-schema
validation and template rendering are the real Helm code paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "deploy" / "helm" / "ragway"
RELEASE = "demo"
NAMESPACE = "ai"

# The value sets CI renders: the defaults, the chart's ci/ sets and the README's examples.
VALUE_FILES: dict[str, Path | None] = {
    "defaults": None,
    **{p.name.removesuffix("-values.yaml"): p for p in sorted((CHART_DIR / "ci").glob("*.yaml"))},
    **{f"example-{p.stem}": p for p in sorted((CHART_DIR / "examples").glob("*.yaml"))},
}

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Render:
    """One `helm template`: the parsed objects, and the raw text of each template file."""

    objects: tuple[Manifest, ...]
    files: dict[str, str]

    @property
    def notes(self) -> str:
        return self.files.get(f"{CHART_DIR.name}/templates/NOTES.txt", "")

    def of_kind(self, kind: str) -> list[Manifest]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> Manifest:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}"
        return found[0]

    def workloads(self) -> list[Manifest]:
        """Objects that carry a pod template, plus bare Pods (the helm test pod)."""
        kinds = {"Deployment", "StatefulSet", "Pod"}
        return [o for o in self.objects if o["kind"] in kinds]


def load_values(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    values = yaml.safe_load(path.read_text())
    assert isinstance(values, dict), f"{path} is not a mapping"
    return values


def render(values: dict[str, Any] | None = None) -> Render:
    """Render the chart. Raises helm_python.HelmValuesError / HelmRenderError on bad values."""
    with helm.Chart.load(CHART_DIR) as chart:
        files = chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    objects = tuple(
        doc
        for name, text in sorted(files.items())
        if name.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    )
    return Render(objects=objects, files=files)


@cache
def render_set(name: str) -> Render:
    """The render of one named value set, computed once per test session."""
    return render(load_values(VALUE_FILES[name]))


def pod_spec(obj: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    return spec


def containers(obj: Manifest) -> Iterator[dict[str, Any]]:
    spec = pod_spec(obj)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}
