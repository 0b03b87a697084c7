"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from server.api.edge import json_response
from server.state import GatewayState

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready when every configured kind of worker has at least one healthy worker."""
    gateway: GatewayState = request.state.ragway
    kinds = gateway.pool.ready()
    ready = bool(kinds) and all(kinds.values())
    return json_response(
        {
            "status": "ready" if ready else "unready",
            "kinds": {kind.value: up for kind, up in kinds.items()},
            "workers": gateway.pool.snapshot(),
            # Reported, not required: without Chroma, chat and embeddings still work.
            "vector_store": gateway.knowledge.store_health(),
            # Flow control's queues: requests waiting per model and band (counts only).
            "flow": gateway.flow.snapshot(),
        },
        200 if ready else 503,
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    gateway: GatewayState = request.state.ragway
    return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)
