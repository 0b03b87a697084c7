"""Ingesting one document: chunk it, embed the chunks, write them as a new version, and then
delete the versions it replaces.

Writing is atomic for readers (server/rag/versions.py): the new version's chunks carry its
version and have their own ids, position 0 is written last and marks the version complete,
readers see only a document's newest complete version, and older versions are deleted only
after that. A crash at any point leaves the old version visible, or the new one; a document is
never lost by being re-ingested, never mixed with another version, and never duplicated.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

from server.errors import InvalidRequest
from server.rag.chunking import Chunk, Chunker
from server.rag.embedder import Embedder
from server.rag.records import (
    CHUNKS,
    CONTENT_SHA256,
    DOC_VERSION,
    DOCUMENT_ID,
    INGESTED_AT,
    POSITION,
    SOURCE,
    START,
    TITLE,
    KnowledgeBase,
    Metadata,
    Scalar,
    split_metadata,
)
from server.rag.store import ChromaStore
from server.rag.versions import chunk_id, current_versions, superseded


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


def chunk_metadata(
    doc: DocumentInput,
    chunk: Chunk,
    total: int,
    digest: str,
    now: int,
    version: int = 0,
    chunk_value_bytes: int = 256,
) -> dict[str, Scalar]:
    """A chunk's metadata: the document's small values (records.split_metadata), ragway's own
    keys, and on the first chunk only, the document's long values."""
    every, once = split_metadata(doc.metadata, chunk_value_bytes)
    meta: dict[str, Scalar] = {
        **every,
        **(once if chunk.position == 0 else {}),
        DOCUMENT_ID: doc.id,
        POSITION: chunk.position,
        START: chunk.start,
        CHUNKS: total,
        CONTENT_SHA256: digest,
        INGESTED_AT: now,
        DOC_VERSION: version,
    }
    if doc.title:
        meta[TITLE] = doc.title
    if doc.source:
        meta[SOURCE] = doc.source
    return meta


class Ingestor:
    def __init__(
        self, store: ChromaStore, embedder: Embedder, chunker: Chunker, chunk_value_bytes: int = 256
    ):
        self._store = store
        self._embedder = embedder
        self._chunker = chunker
        self._chunk_value_bytes = chunk_value_bytes  # limits.chunk_metadata_value_bytes

    async def ingest(self, kb: KnowledgeBase, doc: DocumentInput, request_id: str) -> IngestResult:
        # Taken first: of two concurrent ingests, the later one's version wins.
        version = time.time_ns()
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
        ids = [chunk_id(kb.name, doc.id, c.position, version) for c in chunks]
        metas = [
            chunk_metadata(doc, c, len(chunks), digest, now, version, self._chunk_value_bytes)
            for c in chunks
        ]
        texts = [c.text for c in chunks]
        # Position 0 last: once it is written, this version is complete (versions.py).
        await self._store.upsert(kb.name, ids[1:], vectors[1:], texts[1:], metas[1:])
        await self._store.upsert(kb.name, ids[:1], vectors[:1], texts[:1], metas[:1])
        stored = await self._store.read(kb.name, {DOCUMENT_ID: doc.id}, with_text=False)
        stale = superseded(stored, current_versions(stored).get(doc.id, version))
        await self._store.delete_ids(kb.name, stale)
        return IngestResult(doc.id, len(ids), len(stale))
