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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from server.rag.records import DOC_VERSION, DOCUMENT_LEVEL, POSITION, RetrievedChunk, Scalar


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
