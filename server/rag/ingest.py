"""Ingesting one document: chunk it, embed the chunks, write them, and remove what a previous
version of the document left behind.

Chunk ids are deterministic, a hash of (knowledge base, document id, position), so writing a
document again overwrites its chunks in place rather than adding copies. The new chunks are
upserted first and only then are the old version's surplus chunks deleted: a crash at any point
leaves either the old version or the new one (plus, at worst, old tail chunks that the next
ingest of the document removes). A document is never lost by being re-ingested, and never
duplicated.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

import orjson

from server.errors import InvalidRequest
from server.rag.chunking import Chunk, Chunker
from server.rag.embedder import Embedder
from server.rag.records import (
    CHUNKS,
    CONTENT_SHA256,
    DOCUMENT_ID,
    INGESTED_AT,
    POSITION,
    SOURCE,
    START,
    TITLE,
    KnowledgeBase,
    Metadata,
    Scalar,
)
from server.rag.store import ChromaStore


@dataclass(frozen=True, slots=True)
class DocumentInput:
    id: str
    text: str
    title: str | None = None
    source: str | None = None
    metadata: Metadata = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IngestResult:
    document_id: str
    chunks: int
    # Chunks of a previous, longer version of the document that were removed.
    removed: int


def chunk_id(knowledge_base: str, document_id: str, position: int) -> str:
    # JSON keeps the parts apart whatever characters they hold.
    return hashlib.sha256(orjson.dumps([knowledge_base, document_id, position])).hexdigest()[:32]


def chunk_metadata(
    doc: DocumentInput, chunk: Chunk, total: int, digest: str, now: int
) -> dict[str, Scalar]:
    meta: dict[str, Scalar] = {
        **doc.metadata,
        DOCUMENT_ID: doc.id,
        POSITION: chunk.position,
        START: chunk.start,
        CHUNKS: total,
        CONTENT_SHA256: digest,
        INGESTED_AT: now,
    }
    if doc.title:
        meta[TITLE] = doc.title
    if doc.source:
        meta[SOURCE] = doc.source
    return meta


class Ingestor:
    def __init__(self, store: ChromaStore, embedder: Embedder, chunker: Chunker):
        self._store = store
        self._embedder = embedder
        self._chunker = chunker

    async def ingest(self, kb: KnowledgeBase, doc: DocumentInput, request_id: str) -> IngestResult:
        chunks = await asyncio.to_thread(
            self._chunker.split, doc.text, kb.chunk_tokens, kb.chunk_overlap
        )
        if not chunks:
            raise InvalidRequest("The document has no text.", code="empty_document")
        vectors = await self._embedder.embed(
            kb.embedding_model, [c.text for c in chunks], request_id
        )
        digest = hashlib.sha256(doc.text.encode()).hexdigest()
        now = int(time.time())
        ids = [chunk_id(kb.name, doc.id, c.position) for c in chunks]
        metadatas = [chunk_metadata(doc, c, len(chunks), digest, now) for c in chunks]
        before = await self._store.ids(kb.name, {DOCUMENT_ID: doc.id})
        await self._store.upsert(kb.name, ids, vectors, [c.text for c in chunks], metadatas)
        stale = sorted(set(before) - set(ids))
        if stale:
            await self._store.delete_ids(kb.name, stale)
        return IngestResult(doc.id, len(ids), len(stale))
