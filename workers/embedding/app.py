"""`create_app`: the embedding worker's FastAPI app, with its lifespan.

The lifespan owns every long-lived object: the encoder (loaded off the event loop unless one is
injected: ONNX Runtime on the CPU by default, exported on first start), the batcher with its
model threads, and the service the routes call. Tests inject a
fake encoder and a fresh `CollectorRegistry`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from workers.embedding.api import WorkerState, build_router
from workers.embedding.batcher import DynamicBatcher
from workers.embedding.encoder import Encoder, load_encoder
from workers.embedding.handlers import install_error_handlers
from workers.embedding.metrics import EmbeddingMetrics
from workers.embedding.service import EmbeddingService
from workers.embedding.settings import EmbeddingWorkerSettings


def create_app(
    settings: EmbeddingWorkerSettings,
    *,
    encoder: Encoder | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    metrics = EmbeddingMetrics(registry if registry is not None else CollectorRegistry())
    state = WorkerState(metrics=metrics, max_body_bytes=settings.max_body_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = encoder
        if loaded is None:
            loaded = await asyncio.to_thread(load_encoder, settings)
        batcher = DynamicBatcher(
            loaded,
            metrics,
            max_batch_size=settings.max_batch_size,
            max_batch_tokens=settings.max_batch_tokens,
            max_wait=settings.max_wait_seconds,
            max_queue=settings.max_queue,
        )
        batcher.start()
        metrics.queued.set_function(lambda: batcher.queued)
        if encoder is None:
            await batcher.warm_up()
        state.service = EmbeddingService(
            batcher,
            served_model_name=settings.served_model_name,
            dimension=loaded.dimension,
            max_inputs_per_request=settings.max_inputs_per_request,
            created=int(time.time()),
        )
        try:
            yield
        finally:
            state.service = None
            await batcher.aclose()

    app = FastAPI(
        title="ragway embedding worker",
        summary="OpenAI-compatible embeddings over sentence-transformers",
        lifespan=lifespan,
    )
    app.include_router(build_router(state))
    install_error_handlers(app)
    return app
