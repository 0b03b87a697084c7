"""The alert rules and the Grafana dashboard the chart ships: well-formed, packaged as-is, and
built on metrics that exist."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.helm.chart import CHART_DIR, REPO, render_set

FILES = CHART_DIR / "files"
# Series ragway publishes (server/observability) and vLLM's own; a query on anything else is a typo.
KNOWN_METRICS = {
    "ragway_requests_total",
    "ragway_request_duration_seconds_bucket",
    "ragway_time_to_first_token_seconds_bucket",
    "ragway_worker_up",
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
}
METRIC = re.compile(r"\b(?:ragway_|vllm:)[a-z_:]+")


def alerts() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((FILES / "alerts.yaml").read_text())
    return loaded


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FILES / "dashboard.json").read_text())
    return loaded


def test_alerts_are_a_prometheus_rule_file() -> None:
    content = alerts()
    assert set(content) == {"groups"}
    for group in content["groups"]:
        for rule in group["rules"]:
            assert rule["alert"][0].isupper()
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert {"summary", "description"} <= set(rule["annotations"])
            assert set(METRIC.findall(rule["expr"])) <= KNOWN_METRICS, rule["alert"]


def test_prometheus_rule_carries_the_file_unchanged() -> None:
    (rule,) = render_set("defaults").of_kind("PrometheusRule")
    assert rule["spec"] == alerts()


def test_dashboard_queries_known_metrics() -> None:
    content = dashboard()
    ids = [p["id"] for p in content["panels"]]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel in content["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(METRIC.findall(target["expr"]))
    assert used <= KNOWN_METRICS
    assert {"ragway_requests_total", "vllm:num_requests_waiting"} <= used


def test_dashboard_configmap_carries_the_file_unchanged() -> None:
    (configmap,) = [
        o
        for o in render_set("defaults").of_kind("ConfigMap")
        if o["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert json.loads(configmap["data"]["ragway.json"]) == dashboard()


def test_monitoring_folder_points_at_the_chart_files() -> None:
    pointer = (REPO / "deploy" / "monitoring" / "README.md").read_text()
    assert "deploy/helm/ragway/files/dashboard.json" in pointer
    assert "deploy/helm/ragway/files/alerts.yaml" in pointer
