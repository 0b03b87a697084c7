"""The long-lived objects of one running gateway, built by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from router.pool import WorkerPool
from server.drain import Drain
from server.observability.metrics import GatewayMetrics
from server.responses.service import ResponsesService
from server.services.catalog import Catalog
from server.services.embeddings import EmbeddingService
from server.services.flow import FlowControl
from server.services.generation import GenerationService
from server.services.health import HealthMonitor
from server.services.knowledge import KnowledgeService
from server.settings import RagwaySettings
from server.shared_state import SharedState
from server.tenancy.gate import Tenancy
from server.upstream.client import UpstreamClient


@dataclass(frozen=True, slots=True)
class GatewayState:
    settings: RagwaySettings
    metrics: GatewayMetrics
    upstream: UpstreamClient
    shared: SharedState
    pool: WorkerPool
    catalog: Catalog
    health: HealthMonitor
    generation: GenerationService
    embeddings: EmbeddingService
    knowledge: KnowledgeService
    drain: Drain
    responses: ResponsesService
    tenancy: Tenancy
    flow: FlowControl

    def count_upstream_status(self, status: int) -> None:
        """A worker's own 5xx, relayed as-is, still counts as an upstream failure."""
        if status >= 500:
            self.metrics.upstream_errors.labels("upstream_status").inc()
