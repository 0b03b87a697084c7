"""Uploads, metadata and filters cost bounded work: the knowledge base is looked up first,
parsers are linear and capped and run in the parser pool, metadata and filters have caps."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness
from tests.api.rag_gateway import add_docs, rag_gateway
from tests.api.test_errors import assert_openai_error
from tests.fakes.documents import make_pdf

KB = "/v1/knowledge_bases"


@pytest.fixture
async def rag(tmp_path: Path, token_decoder: TokenDecoder) -> AsyncIterator[Harness]:
    async with rag_gateway(tmp_path, token_decoder, max_document_bytes=64 * 1024) as harness:
        await add_docs(harness, "docs", {"a": "Returns are accepted within 30 days."})
        yield harness


def _file(name: str, data: bytes, **fields: str) -> dict[str, object]:
    return {"files": {"file": (name, data)}, "data": fields}


async def test_upload_to_a_missing_knowledge_base_is_404_before_parsing(rag: Harness) -> None:
    started = time.perf_counter()
    html = b"<b>" * 1_500_000  # 4.5 MB of tags: 18.7 s and +923 MB when parsed first
    response = await rag.client.post(f"{KB}/nope/documents", **_file("x.html", html))  # type: ignore[arg-type]
    assert_openai_error(response, 404, "knowledge_base_not_found")
    assert time.perf_counter() - started < 5


async def test_markdown_title_scan_is_linear(rag: Harness) -> None:
    text = b"# a" + b" " * 3000 + b"b\n\nSome body text about returns.\n"
    started = time.perf_counter()
    response = await rag.client.post(f"{KB}/docs/documents", **_file("t.md", text))  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert time.perf_counter() - started < 10  # was 19 s of regex backtracking
    card = (await rag.client.get(f"{KB}/docs/documents/t.md")).json()
    assert card["title"].startswith("a ")
    assert len(card["title"]) <= 1000


async def test_html_with_too_many_tags_is_a_400_naming_the_cap(rag: Harness) -> None:
    html = b"<b>" * 300_000
    response = await rag.client.post(f"{KB}/docs/documents", **_file("x.html", html))  # type: ignore[arg-type]
    error = assert_openai_error(response, 400)
    assert "limits.max_html_tags" in error["message"]


async def test_pdf_text_over_the_document_cap_is_413(rag: Harness) -> None:
    pages = ["word " * 2000 for _ in range(20)]  # ~200 KB of text, cap 64 KB
    response = await rag.client.post(f"{KB}/docs/documents", **_file("x.pdf", make_pdf(pages, "T")))  # type: ignore[arg-type]
    error = assert_openai_error(response, 413)
    assert "rag.max_document_bytes" in error["message"]


async def test_documents_offset_out_of_range_is_400(rag: Harness) -> None:
    response = await rag.client.get(f"{KB}/docs/documents", params={"offset": 4294967296})
    error = assert_openai_error(response, 400)
    assert error["param"] == "offset"


@pytest.mark.parametrize(
    ("metadata", "cap"),
    [
        ({"big": "x" * 300_000}, "limits.max_metadata_value_bytes"),
        ({f"k{i}": "x" * 4000 for i in range(5)}, "limits.max_metadata_bytes"),
    ],
)
async def test_oversized_metadata_is_refused(
    rag: Harness, metadata: dict[str, str], cap: str
) -> None:
    body = {"id": "m", "text": "one two three " * 200, "metadata": metadata}
    response = await rag.client.post(f"{KB}/docs/documents", json=body)
    error = assert_openai_error(response, 400, "metadata_too_large")
    assert cap in error["message"]


@pytest.mark.parametrize(
    ("where", "cap"),
    [
        ({"tag": {"$in": list(range(1000))}}, "limits.max_filter_values"),
        ({"tag": {"$nin": ["a"] * 1000}}, "limits.max_filter_values"),
        ({"$or": [{"tag": i} for i in range(1000)]}, "limits.max_filter_clauses"),
        ({f"k{i}": 1 for i in range(100)}, "limits.max_filter_clauses"),
    ],
)
async def test_filters_over_their_caps_are_400(
    rag: Harness, where: dict[str, object], cap: str
) -> None:
    response = await rag.client.post(f"{KB}/docs/query", json={"query": "returns", "where": where})
    error = assert_openai_error(response, 400, "invalid_filter")
    assert cap in error["message"]
