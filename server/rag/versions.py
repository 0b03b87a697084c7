"""Document versions: what makes writing a document atomic for readers.

Every ingest writes a new version of its document (chunk metadata `doc_version`, a
nanosecond timestamp taken when the ingest starts; its chunk ids include it, so versions never
overwrite each other). The chunk at position 0 is written last: a version is complete exactly
when its position-0 chunk exists. A document's current version is its newest complete one.
Readers keep only chunks of current versions, so they never see a half-written document or
two versions mixed; older versions are deleted only after a newer one is complete.

Two concurrent ingests of one document both complete; the one that started later is the
current version, and whichever finishes last deletes the other. A crash leaves at worst an
incomplete newer version, invisible to readers, that the next ingest of the document removes.
Chunks written before versions existed count as version 0.

A search checks only the versions it found, by id (a version's position-0 chunk id follows from
the document, the version and the knowledge base): per document, the newest complete version
among the chunks found. A metadata filter over every first chunk (what listing and ingest read)
cost 26-30 ms per query at 100k chunks; the lookup by id, about a millisecond. In the moment
between a newer version completing and the older one's deletion, a search that found only the
older version's chunks shows them: a complete version, never mixed with another, as a search
that began a moment earlier would have.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping

import orjson

from server.rag.records import DOC_VERSION, DOCUMENT_LEVEL, POSITION, RetrievedChunk, Scalar


def chunk_id(knowledge_base: str, document_id: str, position: int, version: int = 0) -> str:
    # JSON keeps the parts apart whatever characters they hold. Version 0: chunks written
    # before versions existed, whose ids had no version.
    parts: list[object] = [knowledge_base, document_id, position]
    if version:
        parts.insert(2, version)
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:32]


def version_of(chunk: RetrievedChunk) -> int:
    value = chunk.metadata.get(DOC_VERSION, 0)
    return value if isinstance(value, int) else 0


def current_versions(first_chunks: Iterable[RetrievedChunk]) -> dict[str, int]:
    """Each document's current version, from its position-0 chunks (one per complete
    version)."""
    current: dict[str, int] = {}
    for chunk in first_chunks:
        if chunk.metadata.get(POSITION) == 0:
            doc = chunk.document_id
            current[doc] = max(current.get(doc, -1), version_of(chunk))
    return current


def visible(chunks: Iterable[RetrievedChunk], current: dict[str, int]) -> list[RetrievedChunk]:
    """The chunks that belong to their document's current version, in order."""
    return [c for c in chunks if current.get(c.document_id) == version_of(c)]


def superseded(chunks: Iterable[RetrievedChunk], current: int) -> list[str]:
    """Ids of one document's chunks from versions older than `current`."""
    return [c.id for c in chunks if version_of(c) < current]


def with_document_metadata(
    chunks: Iterable[RetrievedChunk], first_chunks: Iterable[RetrievedChunk]
) -> list[RetrievedChunk]:
    """`chunks` with the metadata kept once per document (on the first chunk of its version,
    see records.split_metadata) joined back in."""
    shared: dict[tuple[str, int], dict[str, Scalar]] = {}
    for first in first_chunks:
        if first.metadata.get(POSITION) == 0:
            once = {k: v for k, v in first.metadata.items() if k.startswith(DOCUMENT_LEVEL)}
            if once:
                shared[first.document_id, version_of(first)] = once
    if not shared:
        return list(chunks)
    joined = []
    for chunk in chunks:
        extra = shared.get((chunk.document_id, version_of(chunk)))
        if extra and chunk.metadata.get(POSITION) != 0:
            chunk = dataclasses.replace(chunk, metadata={**chunk.metadata, **extra})
        joined.append(chunk)
    return joined


def markers(knowledge_base: str, chunks: Iterable[RetrievedChunk]) -> dict[str, tuple[str, int]]:
    """The position-0 chunk id of each (document, version) among `chunks`, to that pair: the
    version is complete exactly when that id is stored."""
    pairs = {(c.document_id, version_of(c)) for c in chunks}
    return {chunk_id(knowledge_base, doc, 0, version): (doc, version) for doc, version in pairs}


def newest_complete(found: Mapping[str, tuple[str, int]], stored: Iterable[str]) -> dict[str, int]:
    """Each document's newest complete version among `found` (from `markers`), given which of
    those marker ids are `stored`."""
    current: dict[str, int] = {}
    for marker in stored:
        if marker in found:
            doc, version = found[marker]
            current[doc] = max(current.get(doc, -1), version)
    return current
