"""Labelled children of Prometheus metrics, looked up once and kept.

`metric.labels(*values)` takes a lock and builds its key on every call (about 2 µs); a dict
lookup is a tenth of that, and the request path asks for several children per request. Only
for series that are never removed, over bounded label sets (routes, served models, key names,
bands, statuses, reasons): the cache never drops an entry.
"""

from __future__ import annotations

from typing import Any


class Series:
    def __init__(self) -> None:
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def __call__(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child
