"""Every Prometheus series the embedding worker publishes, on an injected registry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from server.errors import RagwayError

# Powers of two up to well past any sane max_batch_size.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# From one short query to a pass at a large max_batch_tokens.
BATCH_TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 65536)
# From well under the default 2 ms max_wait to a queue that is seconds deep.
QUEUE_WAIT_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

# From a lone short input on a fast core to a full batch of long inputs on a busy one.
FORWARD_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

# nginx's "client closed request": the caller went away before the answer.
CLIENT_CLOSED = 499


class EmbeddingMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.batch_size = Histogram(
            "ragway_embedding_batch_size",
            "Inputs in one forward pass.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "ragway_embedding_queue_wait_seconds",
            "Time an input waited in the queue before its forward pass began.",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )
        self.batch_tokens = Histogram(
            "ragway_embedding_batch_tokens",
            "Padded tokens in one forward pass (inputs x the longest input).",
            buckets=BATCH_TOKEN_BUCKETS,
            registry=registry,
        )
        self.forward = Histogram(
            "ragway_embedding_forward_seconds",
            "Time of one forward pass (tokenising included), as the event loop sees it.",
            buckets=FORWARD_BUCKETS,
            registry=registry,
        )
        self.items = Counter(
            "ragway_embedding_items",
            "Inputs embedded.",
            registry=registry,
        )
        # The gateway's flow control scrapes this to hold requests back before the queue fills.
        self.queued = Gauge(
            "ragway_embedding_queued_inputs",
            "Inputs waiting for a forward pass, both lanes together.",
            registry=registry,
        )
        self.requests = Counter(
            "ragway_embedding_requests",
            "Embedding requests answered, by HTTP status.",
            ("status",),
            registry=registry,
        )

    @contextmanager
    def track_request(self) -> Iterator[None]:
        """Count one embedding request under the HTTP status it is answered with."""
        status = 500
        try:
            yield
            status = 200
        except RagwayError as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            self.requests.labels(status=str(status)).inc()
