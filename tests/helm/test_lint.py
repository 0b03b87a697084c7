"""helm lint, and the chart's values.schema.json against its own values and value sets."""

from __future__ import annotations

import json
from typing import Any

import helm_python as helm
import pytest
import yaml
from jsonschema import Draft7Validator

from tests.helm.chart import CHART_DIR, VALUE_FILES, load_values

KUBE_VERSION = "v1.30.0"
INFO = 1  # helm lint severities: 1 info, 2 warning, 3 error


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
    return loaded


@pytest.mark.parametrize("value_set", list(VALUE_FILES))
def test_helm_lint_strict(value_set: str) -> None:
    report = helm.lint(
        CHART_DIR, load_values(VALUE_FILES[value_set]), strict=True, kube_version=KUBE_VERSION
    )
    findings = [m for m in report["messages"] if m["severity"] > INFO]
    assert not findings, findings
    assert not report["errors"]


def test_schema_is_valid_draft7() -> None:
    Draft7Validator.check_schema(schema())


@pytest.mark.parametrize("value_set", list(VALUE_FILES))
def test_value_sets_match_schema_outside_helm(value_set: str) -> None:
    """The same schema through a second implementation (python-jsonschema), over the values as
    Helm coalesces them (Chart.merge_values)."""
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    with helm.Chart.load(CHART_DIR) as chart:
        merged = chart.merge_values(load_values(VALUE_FILES[value_set]))
    errors = [e.message for e in Draft7Validator(schema()).iter_errors(merged)]
    assert not errors
    assert set(merged) == set(defaults)
