"""Flow control's series, on the gateway's registry. Labels: models some worker serves, the
three bands, a fixed set of reasons, and tenants (key names from the key file: bounded)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from server.observability.metrics import LATENCY_BUCKETS


class FlowMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.queue_depth = Gauge(
            "ragway_flow_queue_depth",
            "Requests queued in the gateway, by model and priority band.",
            ("model", "band"),
            registry=registry,
        )
        self.wait = Histogram(
            "ragway_flow_wait_seconds",
            "Time a queued request waited before it was admitted to a worker (requests "
            "admitted at once are not observed).",
            ("model", "band"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.admitted = Counter(
            "ragway_flow_admitted_total",
            "Requests admitted to a worker, by model, band and tenant; a tenant's share is "
            "its rate over the model's.",
            ("model", "band", "tenant"),
            registry=registry,
        )
        self.rejected = Counter(
            "ragway_flow_rejected_total",
            "Requests flow control refused, by model, band and reason: band_full, "
            "queue_timeout, shed or no_healthy_worker.",
            ("model", "band", "reason"),
            registry=registry,
        )
