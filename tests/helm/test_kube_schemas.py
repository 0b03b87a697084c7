"""Every rendered object is valid against the Kubernetes JSON schemas, offline.

Built-in kinds use kubernetes-validate's bundled, strict (no unknown fields) schemas for the
chart's minimum Kubernetes release and for the newest one the package bundles. Custom resources
use the structural schemas in crd_schemas.py.
"""

from __future__ import annotations

import copy

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from jsonschema import Draft202012Validator

from tests.helm.chart import VALUE_FILES, Manifest, render_set
from tests.helm.crd_schemas import CRD_SCHEMAS

# The chart's floor (Chart.yaml kubeVersion) and the newest release the validator bundles.
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def validate(obj: Manifest, version: str) -> None:
    """Raise with the object, field path and reason when `obj` is invalid."""
    ident = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    crd = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if crd is not None:
        errors = sorted(Draft202012Validator(crd).iter_errors(obj), key=str)
        if errors:
            first = errors[0]
            path = ".".join(map(str, first.absolute_path))
            raise AssertionError(f"{ident}: {path}: {first.message}")
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(map(str, exc.path))
        raise AssertionError(f"{ident} (Kubernetes {exc.version}): {path}: {exc.message}") from None


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", list(VALUE_FILES))
def test_every_object_is_valid(value_set: str, version: str) -> None:
    objects = render_set(value_set).objects
    assert objects
    for obj in objects:
        validate(obj, version)


def test_bundled_schemas_cover_the_floor_release() -> None:
    assert "1.30.0" in kubernetes_validate.utils.all_versions()


def _break(what: str) -> Manifest:
    """A copy of a rendered object with one deliberate mistake."""
    render = render_set("keda-monitoring")
    if what == "misspelt probe field":
        obj = copy.deepcopy(render.of_kind("Deployment")[0])
        obj["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    elif what == "wrong type":
        obj = copy.deepcopy(render.of_kind("PodDisruptionBudget")[0])
        obj["spec"]["maxUnavailable"] = [1]
    elif what == "unquoted KEDA threshold":
        obj = copy.deepcopy(render.of_kind("ScaledObject")[0])
        obj["spec"]["triggers"][0]["metadata"]["threshold"] = 5
    else:
        obj = copy.deepcopy(render.of_kind("ServiceMonitor")[0])
        obj["spec"]["endpoints"][0]["intervall"] = "10s"
    return obj


@pytest.mark.parametrize(
    "what",
    [
        "misspelt probe field",
        "wrong type",
        "unquoted KEDA threshold",
        "misspelt ServiceMonitor field",
    ],
)
def test_validator_rejects_broken_objects(what: str) -> None:
    """Guards against a validator that silently accepts anything."""
    with pytest.raises(AssertionError):
        validate(_break(what), KUBE_VERSIONS[0])
