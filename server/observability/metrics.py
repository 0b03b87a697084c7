"""Every Prometheus series the gateway publishes, on an injected registry.

Names are `ragway_<what>_<unit>`; label values come from bounded sets only (routes the app
defines, models some worker serves or an alias names, HTTP status codes, error types).
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from router.types import WorkerKind
from server.observability.series import Series

# From 5 ms (a cached embedding) to 2 minutes (a long generation on a CPU worker).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
)  # fmt: skip

# Gaps between streamed chunks: from 1 ms (a fast GPU) to 5 s (a stalled worker).
GAP_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

UNKNOWN = "unknown"


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.series = Series()
        self.requests = Counter(
            "ragway_requests_total",
            "Requests answered, by route, model and HTTP status.",
            ("route", "model", "status"),
            registry=registry,
        )
        self.request_duration = Histogram(
            "ragway_request_duration_seconds",
            "Time from request to the last byte of the response.",
            ("route", "model"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "ragway_time_to_first_token_seconds",
            "Time from request to the first streamed chunk sent to the client.",
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inter_token_latency = Histogram(
            "ragway_inter_token_latency_seconds",
            "Gap between two streamed chunks sent to the client.",
            ("model",),
            buckets=GAP_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "ragway_prompt_tokens_total",
            "Prompt tokens, from the workers' usage reports.",
            ("model",),
            registry=registry,
        )
        self.completion_tokens = Counter(
            "ragway_completion_tokens_total",
            "Completion tokens, from the workers' usage reports.",
            ("model",),
            registry=registry,
        )
        self.in_flight = Gauge(
            "ragway_requests_in_flight",
            "Requests being answered now.",
            registry=registry,
        )
        self.upstream_errors = Counter(
            "ragway_upstream_errors_total",
            "Failures talking to workers, by error type.",
            ("error_type",),
            registry=registry,
        )
        self.worker_up = Gauge(
            "ragway_worker_up",
            "1 if the worker passed its last health probe.",
            ("worker", "kind"),
            registry=registry,
        )
        self.worker_in_flight = Gauge(
            "ragway_worker_in_flight",
            "Requests ragway has in flight on each worker.",
            ("worker",),
            registry=registry,
        )
        self.worker_queue = Gauge(
            "ragway_worker_queue",
            "Requests waiting in the worker's engine, as last scraped.",
            ("worker",),
            registry=registry,
        )
        self.worker_kv_cache_usage = Gauge(
            "ragway_worker_kv_cache_usage_ratio",
            "The worker's KV-cache use (0 to 1), as last scraped.",
            ("worker",),
            registry=registry,
        )
        self._per_worker = (
            self.worker_in_flight,
            self.worker_queue,
            self.worker_kv_cache_usage,
        )
        self.retries = Counter(
            "ragway_retries_total",
            "Requests sent to another (or the same) worker after a failure, by error type.",
            ("error_type",),
            registry=registry,
        )
        self.prefix_index_entries = Gauge(
            "ragway_prefix_index_entries",
            "Prompt-prefix blocks the prefix-aware policy remembers (bounded).",
            registry=registry,
        )
        self.rag_retrievals = Counter(
            "ragway_rag_retrievals_total",
            "Retrievals for RAG chat, by outcome: ok, failed_open (answered without context) "
            "or failed_closed (answered 503).",
            ("outcome",),
            registry=registry,
        )
        self.rag_retrieval_duration = Histogram(
            "ragway_rag_retrieval_duration_seconds",
            "Time RAG adds before a chat request goes to a worker: query embedding, vector "
            "search and token counting.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rag_chunks_dropped = Counter(
            "ragway_rag_chunks_dropped_total",
            "Retrieved chunks left out of a prompt because they did not fit the token budget.",
            registry=registry,
        )

    def observe_request(
        self,
        route: str,
        model: str,
        status: int,
        took: float,
        ttft: float | None,
        gaps: list[float],
        tokens: tuple[int | None, int | None],
    ) -> None:
        """One traffic request's series. A series appears only once it has something to count
        (no TTFT series for a model only ever asked without streaming)."""
        child = self.series
        child(self.requests, route, model, str(status)).inc()
        child(self.request_duration, route, model).observe(took)
        if ttft is not None:
            child(self.ttft, model).observe(ttft)
        if gaps:
            inter_token = child(self.inter_token_latency, model)
            for gap in gaps:
                inter_token.observe(gap)
        prompt, completion = tokens
        if prompt is not None:
            child(self.prompt_tokens, model).inc(prompt)
        if completion is not None:
            child(self.completion_tokens, model).inc(completion)

    def forget_worker(self, worker_id: str) -> None:
        """A worker left the pool: its `ragway_worker_*` series go with it, so a dashboard
        never shows a deleted pod's last value."""
        for kind in WorkerKind:
            with contextlib.suppress(KeyError):
                self.worker_up.remove(worker_id, kind.value)
        for gauge in self._per_worker:
            with contextlib.suppress(KeyError):
                gauge.remove(worker_id)
