"""Knowledge bases and their documents: create, list, read, delete, ingest and query."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from router.pool import WorkerPool
from router.types import WorkerKind
from server.errors import DocumentNotFound, InvalidRequest, ModelNotFound, PayloadTooLarge
from server.protocol.common import parse_request
from server.protocol.knowledge import (
    AddDocument,
    CreateKnowledgeBase,
    QueryKnowledgeBase,
    validated,
)
from server.rag.filters import FilterError, normalize_where
from server.rag.ingest import DocumentInput, Ingestor
from server.rag.parse_pool import ParserPool
from server.rag.parsers import file_kind
from server.rag.records import (
    DOCUMENT_ID,
    POSITION,
    RESERVED_KEYS,
    START,
    KnowledgeBase,
    RetrievedChunk,
    check_name,
    user_metadata,
)
from server.rag.retriever import Retriever
from server.rag.store import ChromaStore
from server.rag.versions import current_versions, visible
from server.services.catalog import Catalog
from server.settings import LimitsSettings, RagSettings


@dataclass(frozen=True, slots=True)
class FileUpload:
    filename: str | None
    media_type: str | None
    data: bytes
    fields: Mapping[str, str] = field(default_factory=dict)


def where_filter(
    value: Any, param: str, limits: LimitsSettings | None = None
) -> dict[str, Any] | None:
    limits = limits or LimitsSettings()
    try:
        return normalize_where(
            value,
            max_values=limits.max_filter_values,
            max_clauses=limits.max_filter_clauses,
            max_value_bytes=limits.chunk_metadata_value_bytes,
        )
    except FilterError as exc:
        raise InvalidRequest(f"Invalid filter: {exc}.", param=param, code="invalid_filter") from exc


def _document_card(chunk: RetrievedChunk) -> dict[str, Any]:
    meta = chunk.metadata
    return {
        "id": chunk.document_id,
        "object": "knowledge_base.document",
        **{k: meta[k] for k in ("title", "source", "chunks", "content_sha256") if k in meta},
        "ingested_at": meta.get("ingested_at"),
        "metadata": user_metadata(meta),
    }


def _check_document_id(document_id: str) -> str:
    if not document_id.strip() or not document_id.isprintable():
        raise InvalidRequest("A document id must be printable text.", param="id")
    return document_id


class KnowledgeService:
    def __init__(
        self,
        settings: RagSettings,
        store: ChromaStore,
        ingestor: Ingestor,
        retriever: Retriever,
        catalog: Catalog,
        pool: WorkerPool,
        *,
        parsers: ParserPool,
        limits: LimitsSettings,
    ):
        self._parsers = parsers
        self._limits = limits
        self._settings = settings
        self._store = store
        self._ingestor = ingestor
        self._retriever = retriever
        self._catalog = catalog
        self._pool = pool

    def store_health(self) -> dict[str, Any]:
        return self._store.health()

    def _embedding_model(self, asked: str | None, request_id: str) -> str:
        model = asked or self._settings.default_embedding_model
        if model is None:
            served = {
                name
                for state in self._pool.workers
                if state.backend.kind is WorkerKind.EMBEDDING
                for name in state.models
            }
            if len(served) != 1:
                raise InvalidRequest(
                    "Say which embedding_model this knowledge base uses; the embedding workers "
                    f"serve {sorted(served) or 'no model yet'}.",
                    param="embedding_model",
                )
            model = served.pop()
        try:
            return self._catalog.route(WorkerKind.EMBEDDING, model, request_id).served_model
        except ModelNotFound as exc:
            exc.param = "embedding_model"
            raise

    async def create(self, raw: bytes, request_id: str) -> dict[str, Any]:
        _, request = await parse_request(raw, CreateKnowledgeBase, self._limits)
        size = request.chunk_tokens or self._settings.chunk_tokens
        overlap = request.chunk_overlap
        if overlap is None:
            overlap = min(self._settings.chunk_overlap, size // 2)
        if overlap >= size:
            raise InvalidRequest("chunk_overlap must be below chunk_tokens.", param="chunk_overlap")
        kb = KnowledgeBase(
            name=check_name(request.name),
            description=request.description,
            embedding_model=self._embedding_model(request.embedding_model, request_id),
            fail_mode=request.fail_mode or self._settings.fail_mode,
            chunk_tokens=size,
            chunk_overlap=overlap,
            created_at=int(time.time()),
        )
        await self._store.create(kb)
        return kb.card(chunks=0)

    async def all(self) -> dict[str, Any]:
        return {"object": "list", "data": [kb.card() for kb in await self._store.all()]}

    async def require(self, name: str) -> None:
        """404 unless the knowledge base exists: checked before an upload is read or parsed."""
        await self._store.get(name)

    async def get(self, name: str) -> dict[str, Any]:
        kb = await self._store.get(name)
        return kb.card(chunks=await self._store.count(name))

    async def delete(self, name: str) -> dict[str, Any]:
        await self._store.delete(name)
        return {"id": name, "object": "knowledge_base.deleted", "deleted": True}

    async def add_text(self, name: str, raw: bytes, request_id: str) -> dict[str, Any]:
        _, request = await parse_request(raw, AddDocument, self._limits)
        doc_id = request.id or "text-" + hashlib.sha256(request.text.encode()).hexdigest()[:16]
        document = DocumentInput(
            _check_document_id(doc_id),
            request.text,
            request.title,
            request.source,
            request.metadata,
        )
        return await self._ingest(name, document, request_id)

    async def add_file(self, name: str, upload: FileUpload, request_id: str) -> dict[str, Any]:
        if not upload.data:
            raise InvalidRequest("The uploaded file is empty.", param="file", code="empty_document")
        kind = file_kind(upload.filename, upload.media_type)
        parsed = await self._parsers.parse(kind, upload.data)
        form = {
            "id": upload.fields.get("id") or upload.filename or None,
            "text": parsed.text,
            "title": upload.fields.get("title") or parsed.title,
            "source": upload.fields.get("source") or upload.filename,
            "metadata": _form_metadata(upload.fields.get("metadata")),
        }
        request = validated(AddDocument, form, "file")
        # No id and no file name: one from the content, so unnamed uploads never replace each
        # other (and the same content uploaded twice is one document).
        default = "upload-" + hashlib.sha256(request.text.encode()).hexdigest()[:16]
        doc_id = _check_document_id(request.id or default)
        document = DocumentInput(
            doc_id, request.text, request.title, request.source, request.metadata
        )
        return await self._ingest(name, document, request_id)

    async def _ingest(self, name: str, document: DocumentInput, request_id: str) -> dict[str, Any]:
        limit = self._settings.max_document_bytes
        if len(document.text.encode()) > limit:
            raise PayloadTooLarge(f"The document's text is larger than {limit} bytes.")
        if not document.text.strip():
            raise InvalidRequest("The document has no text.", param="text", code="empty_document")
        _check_metadata_size(document.metadata, self._limits)
        bad = sorted(k for k in document.metadata if k in RESERVED_KEYS or ":" in k)
        if bad:
            raise InvalidRequest(
                f"Metadata keys {bad} are reserved (ragway sets them, or they contain ':').",
                param="metadata",
            )
        kb = await self._store.get(name)
        result = await self._ingestor.ingest(kb, document, request_id)
        return {
            "id": result.document_id,
            "object": "knowledge_base.document",
            "knowledge_base": name,
            "chunks": result.chunks,
            "removed_chunks": result.removed,
        }

    async def documents(self, name: str, limit: int, offset: int) -> dict[str, Any]:
        firsts = await self._store.read(name, {POSITION: 0}, limit=limit, offset=offset)
        shown = visible(firsts, current_versions(firsts))
        return {"object": "list", "data": [_document_card(c) for c in shown]}

    async def document(self, name: str, document_id: str) -> dict[str, Any]:
        stored = await self._store.read(name, {DOCUMENT_ID: document_id})
        chunks = visible(stored, current_versions(stored))
        if not chunks:
            raise DocumentNotFound(name, document_id)
        chunks.sort(key=lambda c: int(c.metadata.get(POSITION, 0)))
        parts = [
            {
                "id": c.id,
                "position": c.metadata.get(POSITION),
                "start": c.metadata.get(START),
                "text": c.text,
            }
            for c in chunks
        ]
        return {**_document_card(chunks[0]), "chunks": len(chunks), "data": parts}

    async def delete_document(self, name: str, document_id: str) -> dict[str, Any]:
        ids = await self._store.ids(name, {DOCUMENT_ID: document_id})
        if not ids:
            raise DocumentNotFound(name, document_id)
        await self._store.delete_ids(name, ids)
        return {"id": document_id, "object": "knowledge_base.document.deleted", "deleted": True}

    async def query(self, name: str, raw: bytes, request_id: str) -> dict[str, Any]:
        _, request = await parse_request(raw, QueryKnowledgeBase, self._limits)
        where = where_filter(request.where, "where", self._limits)
        kb = await self._store.get(name)
        found = await self._retriever.retrieve(
            kb,
            request.query,
            top_k=request.top_k,
            where=where,
            min_score=request.min_score,
            request_id=request_id,
        )
        return {"object": "list", "knowledge_base": name, "data": [c.card() for c in found]}


def _check_metadata_size(metadata: Mapping[str, Any], limits: LimitsSettings) -> None:
    """Metadata is copied into every chunk (filters match chunks), so its size is capped."""
    total = 0
    for key, value in metadata.items():
        size = len(value.encode()) if isinstance(value, str) else 8
        if size > limits.max_metadata_value_bytes:
            raise InvalidRequest(
                f"Metadata value `{key[:100]}` is {size} bytes; at most "
                f"{limits.max_metadata_value_bytes} are allowed (limits.max_metadata_value_bytes).",
                param="metadata",
                code="metadata_too_large",
            )
        total += len(key.encode()) + size
    if total > limits.max_metadata_bytes:
        raise InvalidRequest(
            f"The document's metadata is {total} bytes; at most {limits.max_metadata_bytes} are "
            "allowed (limits.max_metadata_bytes).",
            param="metadata",
            code="metadata_too_large",
        )


def _form_metadata(text: str | None) -> Any:
    """A form field holding a JSON object of metadata."""
    if not text:
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("The metadata field is not valid JSON.", param="metadata") from exc
