"""A search checks the versions it found by their position-0 chunk ids (server/rag/versions.py):
per document, the newest complete version among those found; incomplete ones never show."""

from __future__ import annotations

from server.rag.records import Metadata, RetrievedChunk
from server.rag.versions import chunk_id, markers, newest_complete, visible


def chunk(doc: str, version: int, position: int) -> RetrievedChunk:
    meta: Metadata = {"document_id": doc, "doc_version": version, "position": position}
    return RetrievedChunk(chunk_id("kb", doc, position, version), "text", meta)


def test_markers_are_the_position_0_ids_of_each_version_found() -> None:
    found = [chunk("a", 5, 3), chunk("a", 5, 1), chunk("a", 9, 2), chunk("b", 0, 4)]
    assert markers("kb", found) == {
        chunk_id("kb", "a", 0, 5): ("a", 5),
        chunk_id("kb", "a", 0, 9): ("a", 9),
        chunk_id("kb", "b", 0): ("b", 0),  # version 0: ids from before versions existed
    }


def test_the_newest_complete_version_found_wins_and_incomplete_ones_never_show() -> None:
    found = [chunk("a", 5, 3), chunk("a", 9, 2), chunk("b", 7, 1), chunk("c", 1, 0)]
    wanted = markers("kb", found)
    # a: versions 5 and 9 complete; b: version 7 still being written; c: complete.
    stored = [chunk_id("kb", "a", 0, 5), chunk_id("kb", "a", 0, 9), chunk_id("kb", "c", 0, 1)]
    current = newest_complete(wanted, stored)
    assert current == {"a": 9, "c": 1}
    assert [c.id for c in visible(found, current)] == [found[1].id, found[3].id]


def test_ids_that_are_not_markers_are_ignored() -> None:
    found = [chunk("a", 5, 3)]
    assert newest_complete(markers("kb", found), ["unrelated", found[0].id]) == {}
