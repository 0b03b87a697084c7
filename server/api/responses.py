"""The Responses API routes: create (JSON or SSE), retrieve, delete, and list input items."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from server.api.edge import (
    json_response,
    read_body,
    relayed_reply,
    relayed_stream,
    until_disconnect,
)
from server.errors import InvalidRequest
from server.responses.items import listed
from server.responses.service import ResponsesService, owner_of
from server.state import GatewayState

router = APIRouter()
_MAX_LIMIT = 100


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.state.ragway
    return state


def _owner(request: Request) -> str | None:
    """The tenant whose stored responses this request may see (the tenancy middleware puts
    the principal on the request state)."""
    return owner_of(request.state.principal)


def _service(request: Request) -> ResponsesService:
    return _state(request).responses


async def create_response(request: Request) -> Response:
    gateway = _state(request)
    raw = await read_body(request, gateway.settings.max_body_bytes)
    session = request.headers.get(gateway.settings.routing.session_header)
    service = gateway.responses
    turn = await service.prepare(raw, request.state.request_id, request.state.principal, session)
    prepared = turn.prepared
    request.state.record.model = gateway.catalog.label(prepared.model)
    if prepared.stream:
        relayed = await until_disconnect(request, service.stream(turn, request.state.record))
        return relayed_stream(gateway, relayed, prepared.headers)
    reply = await until_disconnect(request, service.unary(turn, request.state.record))
    return relayed_reply(gateway, reply, prepared.headers)


router.add_route("/v1/responses", create_response, methods=["POST"])


@router.get("/v1/responses/{response_id}", include_in_schema=False)
async def get_response(request: Request, response_id: str) -> Response:
    stored = await _service(request).stored(response_id, _owner(request))
    request.state.record.model = _state(request).catalog.label(stored.model)
    return json_response(stored.response)


@router.delete("/v1/responses/{response_id}", include_in_schema=False)
async def delete_response(request: Request, response_id: str) -> Response:
    return json_response(await _service(request).delete(response_id, _owner(request)))


def _limit(value: str | None) -> int:
    if value is None:
        return 20
    if not value.isdigit() or not 1 <= int(value) <= _MAX_LIMIT:
        raise InvalidRequest(f"`limit` must be an integer from 1 to {_MAX_LIMIT}.", param="limit")
    return int(value)


@router.get("/v1/responses/{response_id}/input_items", include_in_schema=False)
async def list_input_items(request: Request, response_id: str) -> Response:
    query = request.query_params
    limit = _limit(query.get("limit"))
    order = query.get("order", "desc")
    if order not in {"asc", "desc"}:
        raise InvalidRequest("`order` must be `asc` or `desc`.", param="order")
    stored = await _service(request).stored(response_id, _owner(request))
    items = listed(stored.id, stored.input_items)
    if order == "desc":
        items.reverse()
    after = query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item `{after}` in this response.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )
