"""The OpenAI-compatible routes.

The three generation and embedding routes are plain Starlette routes: FastAPI's
handler solves dependencies and builds an exit stack for every call, about 45 µs a request that
these endpoints, which take only the raw request, do not need (and PlainEndpoint leaves out
Starlette's per-route exception wrapper too). They are left out of the OpenAPI
schema, which describes ragway's own API (knowledge bases, operations); the OpenAI routes are
OpenAI's.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.edge import (
    PlainEndpoint,
    json_response,
    read_body,
    relayed_reply,
    relayed_stream,
    until_disconnect,
)
from server.errors import ModelNotFound
from server.services.generation import Endpoint
from server.services.usage import usage_of
from server.state import GatewayState
from server.tenancy.scopes import may_see_model, visible_models

router = APIRouter()


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.state.ragway
    return state


async def _generate(request: Request, endpoint: Endpoint) -> Response:
    gateway = _state(request)
    raw = await read_body(request, gateway.settings.max_body_bytes)
    session = request.headers.get(gateway.settings.routing.session_header)
    prepared = await gateway.generation.prepare(
        endpoint, raw, request.state.request_id, session, request.state.principal
    )
    request.state.record.model = gateway.catalog.label(prepared.model)
    if prepared.stream:
        relayed = await until_disconnect(
            request, gateway.generation.stream(prepared, request.state.record)
        )
        return relayed_stream(gateway, relayed, prepared.headers)
    reply = await until_disconnect(
        request, gateway.generation.unary(prepared, request.state.record)
    )
    return relayed_reply(gateway, reply, prepared.headers)


async def chat_completions(request: Request) -> Response:
    return await _generate(request, Endpoint.CHAT)


async def completions(request: Request) -> Response:
    return await _generate(request, Endpoint.COMPLETIONS)


async def embeddings(request: Request) -> Response:
    gateway = _state(request)
    raw = await read_body(request, gateway.settings.max_body_bytes)
    model, reply = await until_disconnect(
        request, gateway.embeddings.embed(raw, request.state.request_id, request.state.principal)
    )
    request.state.record.model = gateway.catalog.label(model)
    if reply.status == 200:
        request.state.record.usage(usage_of(reply.content))
    gateway.count_upstream_status(reply.status)
    return Response(reply.content, reply.status, media_type=reply.content_type)


# Also reached through server/api/fast_lane.py, which skips the router for them.
plain_routes = [
    Route(path, PlainEndpoint(handler), methods=["POST"], include_in_schema=False)
    for path, handler in (
        ("/v1/chat/completions", chat_completions),
        ("/v1/completions", completions),
        ("/v1/embeddings", embeddings),
    )
]
router.routes += plain_routes


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    request.state.record.model = "all"
    catalog = _state(request).catalog
    listing = visible_models(request.state.principal, catalog.list_models(), catalog.served_name)
    return json_response(listing)


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(request: Request, model_id: str) -> Response:
    """One model: served, alias or RAG virtual model. Ids may hold `/` (Hugging Face names).
    A model the caller's key may not use does not exist for it (404, as in the listing)."""
    catalog = _state(request).catalog
    request.state.record.model = catalog.label(model_id)
    card = catalog.model_card(model_id)
    if not may_see_model(request.state.principal, model_id, catalog.served_name):
        raise ModelNotFound(model_id)
    return json_response(card)
