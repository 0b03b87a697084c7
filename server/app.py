"""The gateway's application factory. Nothing happens at import time; everything long-lived
is built by the lifespan, and every collaborator a test may want to replace is a parameter."""

from __future__ import annotations

import functools

import httpx
from fastapi import FastAPI
from lightkube import AsyncClient
from prometheus_client import CollectorRegistry

from server.api import knowledge, openai, ops, responses
from server.api.errors import install_error_handlers, ragway_error_response
from server.api.fast_lane import FastLane
from server.drain import Drain, DrainGate
from server.lifespan import build_lifespan
from server.middleware import RequestContextMiddleware
from server.observability.metrics import GatewayMetrics
from server.rag.retriever import Retriever
from server.services.embeddings import TokenDecoder
from server.settings import RagwaySettings
from server.tenancy.gate import TenancyMiddleware


def create_app(
    settings: RagwaySettings,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    registry: CollectorRegistry | None = None,
    token_decoder: TokenDecoder | None = None,
    retriever: Retriever | None = None,
    kube_client: AsyncClient | None = None,
    drain: Drain | None = None,
) -> FastAPI:
    """`drain` is what the server's SIGTERM handler starts (server/__main__.py); it is also
    `app.state.drain`."""
    metrics = GatewayMetrics(registry if registry is not None else CollectorRegistry())
    drain = drain if drain is not None else Drain(settings.shutdown.grace)
    app = FastAPI(
        title="ragway",
        summary="OpenAI-compatible gateway over vLLM workers",
        lifespan=build_lifespan(
            settings,
            metrics,
            upstream_transport=upstream_transport,
            token_decoder=token_decoder,
            retriever=retriever,
            kube_client=kube_client,
            drain=drain,
        ),
    )
    app.state.drain = drain
    install_error_handlers(app, metrics)
    app.include_router(openai.router)
    app.include_router(responses.router)
    app.include_router(knowledge.router)
    app.include_router(ops.router)
    app.add_middleware(
        FastLane,
        routes=openai.plain_routes,
        on_error=functools.partial(ragway_error_response, metrics=metrics),
    )
    app.add_middleware(TenancyMiddleware)  # inside the request context: it needs the record
    app.add_middleware(DrainGate, drain=drain)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
