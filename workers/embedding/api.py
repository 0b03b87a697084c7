"""The worker's HTTP routes, kept thin: read the body, call the service, return bytes."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.errors import InvalidRequest, PayloadTooLarge
from workers.embedding.batcher import Priority
from workers.embedding.errors import WorkerShuttingDown
from workers.embedding.metrics import EmbeddingMetrics
from workers.embedding.protocol import parse_embedding_request
from workers.embedding.service import EmbeddingService

JSON = "application/json"
# Which batcher lane a request goes to: `interactive` or `bulk`. Without it, a request with one
# input is interactive. The gateway sets it (RAG's query embedding, ingest batches).
PRIORITY_HEADER = "x-ragway-priority"
_PRIORITIES: dict[str, Priority] = {"interactive": "interactive", "bulk": "bulk"}


@dataclass
class WorkerState:
    """What the routes need; `service` is set by the lifespan once the model is loaded."""

    metrics: EmbeddingMetrics
    max_body_bytes: int
    service: EmbeddingService | None = None

    def require_service(self) -> EmbeddingService:
        if self.service is None:
            raise WorkerShuttingDown("The embedding model is not loaded.")
        return self.service


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def priority_of(request: Request) -> Priority | None:
    value = request.headers.get(PRIORITY_HEADER)
    if value is None:
        return None
    priority = _PRIORITIES.get(value.strip().lower())
    if priority is None:
        raise InvalidRequest(
            f"The {PRIORITY_HEADER} header must be `interactive` or `bulk`, not {value!r}."
        )
    return priority


def build_router(state: WorkerState) -> APIRouter:
    router = APIRouter()

    # A plain Starlette route, as the gateway's OpenAI routes are (server/api/openai.py):
    # FastAPI's handler (dependencies, an exit stack per call) costs tens of microseconds a
    # request on the core the model runs on. The body is parsed by hand (orjson, then the
    # model) so that every failure, malformed JSON included, is an OpenAI-shaped 400.
    async def create_embeddings(request: Request) -> Response:
        with state.metrics.track_request():
            service = state.require_service()
            priority = priority_of(request)
            body = parse_embedding_request(await read_body(request, state.max_body_bytes))
            content = await service.embed(body, priority)
        return Response(content, media_type=JSON)

    router.add_route("/v1/embeddings", create_embeddings, methods=["POST"])

    @router.get("/v1/models")
    async def list_models() -> Response:
        content = state.require_service().models().model_dump_json()
        return Response(content, media_type=JSON)

    @router.get("/health")
    async def health() -> Response:
        if state.service is None or not state.service.ready:
            return Response(b'{"status":"unavailable"}', status_code=503, media_type=JSON)
        return Response(b'{"status":"ok"}', media_type=JSON)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
