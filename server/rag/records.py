"""Plain data of the RAG layer: a knowledge base's record and a retrieved chunk."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.errors import InvalidRequest
from server.settings import FailMode

Scalar = str | int | float | bool
Metadata = Mapping[str, Scalar]

# Chunk metadata ragway writes itself; user metadata may not use these keys.
DOCUMENT_ID = "document_id"
POSITION = "position"
TITLE = "title"
SOURCE = "source"
CHUNKS = "chunks"
START = "start"
CONTENT_SHA256 = "content_sha256"
INGESTED_AT = "ingested_at"
DOC_VERSION = "doc_version"  # see server/rag/versions.py
RESERVED_KEYS = frozenset(
    {DOCUMENT_ID, POSITION, TITLE, SOURCE, CHUNKS, START, CONTENT_SHA256, INGESTED_AT, DOC_VERSION}
)

# Metadata values too long to copy into every chunk are kept once per document, on its first
# chunk (position 0), under this prefix; user keys have no ':', so the two never meet.
DOCUMENT_LEVEL = "document:"


def split_metadata(metadata: Metadata, chunk_value_bytes: int) -> tuple[Metadata, Metadata]:
    """(the values copied into every chunk, the prefixed values kept once per document).
    Numbers, booleans and strings up to `chunk_value_bytes` UTF-8 bytes go into chunks, where
    `where` filters can match them; longer strings are only shown with the document."""
    every: dict[str, Scalar] = {}
    once: dict[str, Scalar] = {}
    for key, value in metadata.items():
        if isinstance(value, str) and len(value.encode()) > chunk_value_bytes:
            once[DOCUMENT_LEVEL + key] = value
        else:
            every[key] = value
    return every, once


def user_metadata(meta: Metadata) -> dict[str, Scalar]:
    """Metadata as the user gave it: ragway's own keys left out, document-level ones unprefixed."""
    shown: dict[str, Scalar] = {}
    for key, value in meta.items():
        if key.startswith(DOCUMENT_LEVEL):
            shown[key.removeprefix(DOCUMENT_LEVEL)] = value
        elif key not in RESERVED_KEYS:
            shown[key] = value
    return shown


# Chroma's collection names allow these characters; ragway prefixes its own (see store.py).
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise InvalidRequest(
            "A knowledge base name is 1 to 63 letters, digits, '.', '_' or '-', starting and "
            f"ending with a letter or digit; got {name!r}.",
            param="name",
        )
    return name


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    name: str
    description: str
    embedding_model: str
    fail_mode: FailMode
    chunk_tokens: int
    chunk_overlap: int
    created_at: int

    def card(self, chunks: int | None = None) -> dict[str, Any]:
        card: dict[str, Any] = {
            "id": self.name,
            "object": "knowledge_base",
            "name": self.name,
            "description": self.description,
            "embedding_model": self.embedding_model,
            "fail_mode": self.fail_mode,
            "chunk_tokens": self.chunk_tokens,
            "chunk_overlap": self.chunk_overlap,
            "created_at": self.created_at,
        }
        if chunks is not None:
            card["chunks"] = chunks
        return card


@dataclass(frozen=True, slots=True)
class RetrievedChunk:
    id: str
    text: str
    metadata: Metadata
    # Cosine similarity to the query; None when the chunk was read rather than searched for.
    score: float | None = None

    @property
    def document_id(self) -> str:
        return str(self.metadata.get(DOCUMENT_ID, ""))

    @property
    def label(self) -> str:
        """How a passage is introduced in the prompt: its title, else its source, else its id."""
        for key in (TITLE, SOURCE, DOCUMENT_ID):
            value = self.metadata.get(key)
            if value:
                return str(value)
        return self.id

    def card(self) -> dict[str, Any]:
        card: dict[str, Any] = {"id": self.id, "document_id": self.document_id}
        if self.score is not None:
            card["score"] = round(self.score, 6)
        for key in (TITLE, SOURCE, POSITION):
            if key in self.metadata:
                card[key] = self.metadata[key]
        card["text"] = self.text
        card["metadata"] = user_metadata(self.metadata)
        return card
