"""Structural schemas for the custom resources the chart renders.

kubernetes-validate bundles the schemas of Kubernetes' built-in kinds only. The CRDs' own
OpenAPI schemas are not on any package index we can install from, so these are hand-written
from the upstream CRDs (prometheus-operator v0.80+ monitoring.coreos.com/v1, KEDA 2.x
keda.sh/v1alpha1, Gateway API v1.x gateway.networking.k8s.io/v1). They cover the fields the chart
renders, reject any other field (as the strict built-in schemas do), and check the types that
matter: KEDA trigger metadata values must be strings, durations are Prometheus durations.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_DURATION = {"type": "string", "pattern": r"^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA: Schema = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    "additionalProperties": False,
}
_LABEL_SELECTOR: Schema = {
    "type": "object",
    "properties": {"matchLabels": _STRING_MAP, "matchExpressions": {"type": "array"}},
    "additionalProperties": False,
}


def _strict(required: list[str], properties: Schema) -> Schema:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


def _resource(api_version: str, kind: str, spec: Schema) -> Schema:
    return _strict(
        ["apiVersion", "kind", "metadata", "spec"],
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    )


_SERVICE_MONITOR = _strict(
    ["selector", "endpoints"],
    {
        "selector": _LABEL_SELECTOR,
        "namespaceSelector": _strict(
            [],
            {
                "any": {"type": "boolean"},
                "matchNames": {"type": "array", "items": {"type": "string"}},
            },
        ),
        "jobLabel": {"type": "string"},
        "endpoints": {
            "type": "array",
            "minItems": 1,
            "items": _strict(
                [],
                {
                    "port": {"type": "string"},
                    "path": {"type": "string", "pattern": "^/"},
                    "scheme": {"enum": ["http", "https"]},
                    "interval": _DURATION,
                    "scrapeTimeout": _DURATION,
                    "honorLabels": {"type": "boolean"},
                    "relabelings": {"type": "array"},
                    "metricRelabelings": {"type": "array"},
                    # SafeAuthorization: a Secret key selector, never an inline credential.
                    "authorization": _strict(
                        [],
                        {
                            "type": {"type": "string"},
                            "credentials": _strict(
                                ["key"],
                                {
                                    "name": {"type": "string"},
                                    "key": {"type": "string"},
                                    "optional": {"type": "boolean"},
                                },
                            ),
                        },
                    ),
                },
            ),
        },
    },
)

_RULE = _strict(
    ["expr"],
    {
        "alert": {"type": "string", "minLength": 1},
        "record": {"type": "string", "minLength": 1},
        "expr": {"type": "string", "minLength": 1},
        "for": _DURATION,
        "keep_firing_for": _DURATION,
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
)
_RULE["oneOf"] = [{"required": ["alert"]}, {"required": ["record"]}]

_PROMETHEUS_RULE = _strict(
    ["groups"],
    {
        "groups": {
            "type": "array",
            "minItems": 1,
            "items": _strict(
                ["name", "rules"],
                {
                    "name": {"type": "string", "minLength": 1},
                    "interval": _DURATION,
                    "rules": {"type": "array", "minItems": 1, "items": _RULE},
                },
            ),
        }
    },
)

_SCALED_OBJECT = _strict(
    ["scaleTargetRef", "triggers"],
    {
        "scaleTargetRef": _strict(
            ["name"],
            {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "name": {"type": "string"},
            },
        ),
        "pollingInterval": {"type": "integer", "minimum": 1},
        "cooldownPeriod": {"type": "integer", "minimum": 0},
        "minReplicaCount": {"type": "integer", "minimum": 0},
        "maxReplicaCount": {"type": "integer", "minimum": 1},
        "triggers": {
            "type": "array",
            "minItems": 1,
            "items": _strict(
                ["type", "metadata"],
                {
                    "type": {"type": "string"},
                    "name": {"type": "string"},
                    # KEDA rejects a non-string metadata value (e.g. an unquoted threshold).
                    "metadata": _STRING_MAP,
                    "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                },
            ),
        },
    },
)

_HTTP_ROUTE = _strict(
    ["parentRefs"],
    {
        "parentRefs": {
            "type": "array",
            "minItems": 1,
            "items": _strict(
                ["name"],
                {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "sectionName": {"type": "string"},
                    "port": {"type": "integer"},
                    "group": {"type": "string"},
                    "kind": {"type": "string"},
                },
            ),
        },
        "hostnames": {"type": "array", "items": {"type": "string"}},
        "rules": {
            "type": "array",
            "items": _strict(
                [],
                {
                    "matches": {
                        "type": "array",
                        "items": _strict(
                            [],
                            {
                                "path": _strict(
                                    [],
                                    {
                                        "type": {
                                            "enum": ["Exact", "PathPrefix", "RegularExpression"]
                                        },
                                        "value": {"type": "string", "pattern": "^/"},
                                    },
                                )
                            },
                        ),
                    },
                    "backendRefs": {
                        "type": "array",
                        "items": _strict(
                            ["name", "port"],
                            {
                                "name": {"type": "string"},
                                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                "weight": {"type": "integer"},
                            },
                        ),
                    },
                },
            ),
        },
    },
)

# (apiVersion, kind) -> schema
CRD_SCHEMAS: dict[tuple[str, str], Schema] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _resource(
        "monitoring.coreos.com/v1", "ServiceMonitor", _SERVICE_MONITOR
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _resource(
        "monitoring.coreos.com/v1", "PrometheusRule", _PROMETHEUS_RULE
    ),
    ("keda.sh/v1alpha1", "ScaledObject"): _resource(
        "keda.sh/v1alpha1", "ScaledObject", _SCALED_OBJECT
    ),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): _resource(
        "gateway.networking.k8s.io/v1", "HTTPRoute", _HTTP_ROUTE
    ),
}
