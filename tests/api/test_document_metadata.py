"""Document-level metadata is stored once, not in every chunk (limits.chunk_metadata_value_bytes):
long values live on the document's first chunk only and are joined back for listing, reading
and query results; small values are in every chunk, where `where` filters match them; a filter
on a long value is a 400. Counted in the embedded Chroma's own chunk metadatas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import chromadb
import pytest

from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness
from tests.api.rag_gateway import rag_gateway
from tests.api.test_errors import assert_openai_error

BIG = "x" * 300_000
WORDS = " ".join(f"word{i}" for i in range(600))
LIMITS = {"max_metadata_value_bytes": 400_000, "max_metadata_bytes": 500_000}


@pytest.fixture
async def rag(tmp_path: Path, token_decoder: TokenDecoder) -> AsyncIterator[Harness]:
    async with rag_gateway(tmp_path, token_decoder, limits=LIMITS) as harness:
        created = await harness.client.post(
            "/v1/knowledge_bases", json={"name": "kb", "chunk_tokens": 16, "chunk_overlap": 0}
        )
        assert created.status_code == 200, created.text
        body = {"id": "d", "text": WORDS, "metadata": {"big": BIG, "lang": "en", "rev": 3}}
        added = await harness.client.post("/v1/knowledge_bases/kb/documents", json=body)
        assert added.status_code == 200, added.text
        assert added.json()["chunks"] > 20
        yield harness


def chunk_metadatas(data_dir: Path) -> list[dict[str, Any]]:
    # The gateway's own settings (server/rag/chroma_client.py): one Chroma system per path.
    settings = chromadb.config.Settings(anonymized_telemetry=False)
    client = chromadb.PersistentClient(path=str(data_dir / "chroma"), settings=settings)
    got = client.get_collection("ragway-kb").get(include=["metadatas"])
    return [dict(m or {}) for m in got["metadatas"] or []]


async def test_a_300_kb_value_is_stored_once_not_per_chunk(rag: Harness, tmp_path: Path) -> None:
    metas = chunk_metadatas(tmp_path)
    assert len(metas) > 20
    stored = sum(len(str(v)) for m in metas for v in m.values())
    assert 300_000 <= stored < 300_000 + 500 * len(metas)  # once, plus the small keys
    assert [m["position"] for m in metas if "document:big" in m] == [0]
    assert all(m["lang"] == "en" and m["rev"] == 3 and "big" not in m for m in metas)


async def test_listing_reading_and_queries_show_the_whole_metadata(rag: Harness) -> None:
    whole = {"big": BIG, "lang": "en", "rev": 3}
    listed = (await rag.client.get("/v1/knowledge_bases/kb/documents")).json()["data"]
    assert [d["metadata"] for d in listed] == [whole]
    document = (await rag.client.get("/v1/knowledge_bases/kb/documents/d")).json()
    assert document["metadata"] == whole
    query = {"query": "word300", "top_k": 5, "where": {"lang": "en"}}
    found = await rag.client.post("/v1/knowledge_bases/kb/query", json=query)
    assert found.status_code == 200, found.text
    hits = found.json()["data"]
    assert len(hits) == 5
    assert any(h["position"] != 0 for h in hits)
    assert all(h["metadata"] == whole for h in hits)


@pytest.mark.parametrize(
    "where",
    [{"big": BIG}, {"big": {"$in": ["a", BIG]}}, {"document:big": "x"}],
    ids=["long value", "long value in $in", "internal key"],
)
async def test_a_filter_on_a_document_level_value_is_a_400(
    rag: Harness, where: dict[str, Any]
) -> None:
    found = await rag.client.post(
        "/v1/knowledge_bases/kb/query", json={"query": "q", "where": where}
    )
    error = assert_openai_error(found, 400, "invalid_filter")
    assert ("chunk_metadata_value_bytes" in error["message"]) == ("big" in where)
