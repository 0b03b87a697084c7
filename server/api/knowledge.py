"""The knowledge-base API: knowledge bases, their documents, and queries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import Response

from server.api.edge import json_response, read_body
from server.errors import InvalidRequest
from server.protocol.knowledge import AddDocument, CreateKnowledgeBase, QueryKnowledgeBase
from server.services.knowledge import FileUpload, KnowledgeService
from server.state import GatewayState
from server.tenancy.principal import KbAccess
from server.tenancy.scopes import require_kb

router = APIRouter(prefix="/v1/knowledge_bases")


def _body_schema(model: type[BaseModel], *, upload: bool = False) -> dict[str, Any]:
    """The request body in the OpenAPI document (handlers read raw bodies, so FastAPI cannot
    infer it): for clients, and for the schemathesis run over this API."""
    content: dict[str, Any] = {"application/json": {"schema": model.model_json_schema()}}
    if upload:
        fields = {name: {"type": "string"} for name in ("id", "title", "source", "metadata")}
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}, **fields},
            }
        }
    return {"requestBody": {"required": True, "content": content}}


def _service(request: Request) -> KnowledgeService:
    gateway: GatewayState = request.state.ragway
    return gateway.knowledge


def _require(request: Request, name: str, needed: KbAccess) -> None:
    require_kb(request.state.principal, name, needed)


def _name_in(raw: bytes) -> str:
    """The `name` of a create request, for the scope check (the service validates the rest)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else ""


async def _body(request: Request) -> bytes:
    gateway: GatewayState = request.state.ragway
    return await read_body(request, gateway.settings.rag.max_upload_bytes)


async def _read_form(headers: Headers, raw: bytes) -> FileUpload:
    """The `file` part of a multipart body, and its text fields (id, title, source, metadata)."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield raw

    parser = MultiPartParser(headers, stream(), max_files=1, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"Malformed multipart body: {exc.message}", param="file") from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("A multipart upload needs a `file` part.", param="file")
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        return FileUpload(upload.filename, upload.content_type, await upload.read(), fields)
    finally:
        await form.close()


async def _upload(request: Request, raw: bytes) -> FileUpload:
    gateway: GatewayState = request.state.ragway
    if len(raw) >= gateway.settings.limits.offload_parse_bytes:
        # python-multipart splits the body in Python: a large one is split in a worker thread
        # (on an event loop of its own there), not on the gateway's loop.
        return await asyncio.to_thread(asyncio.run, _read_form(request.headers, raw))
    return await _read_form(request.headers, raw)


@router.post("", openapi_extra=_body_schema(CreateKnowledgeBase))
async def create_knowledge_base(request: Request) -> Response:
    raw = await _body(request)
    _require(request, _name_in(raw), KbAccess.ADMIN)
    return json_response(await _service(request).create(raw, request.state.request_id))


@router.get("")
async def list_knowledge_bases(request: Request) -> Response:
    listing = await _service(request).all()
    principal = request.state.principal
    if not principal.admin:
        readable = [kb for kb in listing["data"] if principal.may(kb["name"], KbAccess.READ)]
        listing = {**listing, "data": readable}
    return json_response(listing)


@router.get("/{name}")
async def get_knowledge_base(request: Request, name: str) -> Response:
    _require(request, name, KbAccess.READ)
    return json_response(await _service(request).get(name))


@router.delete("/{name}")
async def delete_knowledge_base(request: Request, name: str) -> Response:
    _require(request, name, KbAccess.ADMIN)
    return json_response(await _service(request).delete(name))


@router.post("/{name}/documents", openapi_extra=_body_schema(AddDocument, upload=True))
async def add_document(request: Request, name: str) -> Response:
    """A JSON document (`{"id"?, "text", "title"?, "source"?, "metadata"?}`), or a file as
    multipart/form-data (`file`, with optional `id`, `title`, `source`, `metadata` fields)."""
    _require(request, name, KbAccess.WRITE)
    service, request_id = _service(request), request.state.request_id
    await service.require(name)  # before reading, let alone parsing, the upload
    raw = await _body(request)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        result = await service.add_file(name, await _upload(request, raw), request_id)
    else:
        result = await service.add_text(name, raw, request_id)
    return json_response(result)


@router.get("/{name}/documents")
async def list_documents(
    request: Request,
    name: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    # Chroma's offsets are 32-bit: 2^32 was a 500.
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> Response:
    _require(request, name, KbAccess.READ)
    return json_response(await _service(request).documents(name, limit, offset))


@router.get("/{name}/documents/{document_id:path}")
async def get_document(request: Request, name: str, document_id: str) -> Response:
    _require(request, name, KbAccess.READ)
    return json_response(await _service(request).document(name, document_id))


@router.delete("/{name}/documents/{document_id:path}")
async def delete_document(request: Request, name: str, document_id: str) -> Response:
    _require(request, name, KbAccess.WRITE)
    return json_response(await _service(request).delete_document(name, document_id))


@router.post("/{name}/query", openapi_extra=_body_schema(QueryKnowledgeBase))
async def query_knowledge_base(request: Request, name: str) -> Response:
    _require(request, name, KbAccess.READ)
    raw = await _body(request)
    return json_response(await _service(request).query(name, raw, request.state.request_id))
