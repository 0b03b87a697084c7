"""The knowledge-base API in-process, on an embedded Chroma in a temporary directory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness
from tests.api.rag_gateway import add_docs, rag_gateway
from tests.api.test_errors import assert_openai_error
from tests.fakes.documents import HTML, MARKDOWN, make_pdf

KB = "/v1/knowledge_bases"
LONG = "\n\n".join(
    f"Section {i}. " + " ".join(f"term{i}w{j}" for j in range(120)) for i in range(6)
)


@pytest.fixture
async def rag(tmp_path: Path, token_decoder: TokenDecoder) -> AsyncIterator[Harness]:
    async with rag_gateway(
        tmp_path, token_decoder, max_upload_bytes=64 * 1024, max_document_bytes=32 * 1024
    ) as harness:
        yield harness


async def chunk_count(rag: Harness, kb: str = "docs") -> int:
    body = (await rag.client.get(f"{KB}/{kb}")).json()
    count: int = body["chunks"]
    return count


async def test_create_list_get_delete(rag: Harness) -> None:
    created = await rag.client.post(
        KB, json={"name": "docs", "description": "Product docs", "fail_mode": "closed"}
    )
    assert created.status_code == 200
    card = created.json()
    assert card["object"] == "knowledge_base"
    # The one model the embedding workers serve, as a served name.
    assert card["embedding_model"] == "tiny-embed"
    assert (card["description"], card["fail_mode"], card["chunks"]) == ("Product docs", "closed", 0)
    await rag.client.post(KB, json={"name": "other", "embedding_model": "text-embedding-3-small"})
    listed = (await rag.client.get(KB)).json()
    assert [kb["name"] for kb in listed["data"]] == ["docs", "other"]
    assert listed["data"][1]["embedding_model"] == "tiny-embed"  # the alias, resolved
    got = (await rag.client.get(f"{KB}/docs")).json()
    assert got["description"] == "Product docs"
    deleted = await rag.client.delete(f"{KB}/docs")
    assert deleted.json() == {"id": "docs", "object": "knowledge_base.deleted", "deleted": True}
    assert_openai_error(await rag.client.get(f"{KB}/docs"), 404, "knowledge_base_not_found")
    assert [kb["name"] for kb in (await rag.client.get(KB)).json()["data"]] == ["other"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "bad name"}, 400, None),
        ({"name": "-x"}, 400, None),
        ({"name": "a..b"}, 400, None),
        ({"name": "x" * 64}, 400, None),
        ({"name": "ok", "embedding_model": "nope"}, 404, "model_not_found"),
        ({"name": "ok", "fail_mode": "sometimes"}, 400, None),
        ({"name": "ok", "chunk_tokens": 32, "chunk_overlap": 32}, 400, None),
        ({"name": "ok", "colour": "blue"}, 400, None),
        ({}, 400, None),
    ],
)
async def test_bad_create_is_4xx(
    rag: Harness, body: dict[str, Any], status: int, code: str | None
) -> None:
    assert_openai_error(await rag.client.post(KB, json=body), status, code)


async def test_duplicate_is_409(rag: Harness) -> None:
    await rag.client.post(KB, json={"name": "docs"})
    assert_openai_error(
        await rag.client.post(KB, json={"name": "docs"}), 409, "knowledge_base_exists"
    )


async def test_embeddings_come_from_the_embedding_worker(rag: Harness) -> None:
    await add_docs(rag, "docs", {"long": LONG}, chunk_tokens=64, chunk_overlap=8)
    inputs = [text for body in rag.embed.received for text in body["input"]]
    assert all(body["model"] == "tiny-embed" for body in rag.embed.received)
    document = (await rag.client.get(f"{KB}/docs/documents/long")).json()
    assert [part["text"] for part in document["data"]] == inputs
    assert document["chunks"] == len(inputs) > 5
    assert [part["position"] for part in document["data"]] == list(range(len(inputs)))


async def test_reingest_replaces_and_never_duplicates(rag: Harness) -> None:
    await add_docs(rag, "docs", {"long": LONG, "short": "A short note."}, chunk_tokens=64)
    first = await chunk_count(rag)
    again = await rag.client.post(f"{KB}/docs/documents", json={"id": "long", "text": LONG})
    # A new version is written whole, then the old one (every chunk of it) is deleted.
    assert again.json()["removed_chunks"] == first - 1
    assert await chunk_count(rag) == first
    shorter = await rag.client.post(
        f"{KB}/docs/documents", json={"id": "long", "text": "Only one chunk now."}
    )
    assert shorter.json()["chunks"] == 1
    assert shorter.json()["removed_chunks"] == first - 1  # every chunk of the old version
    assert await chunk_count(rag) == 2
    document = (await rag.client.get(f"{KB}/docs/documents/long")).json()
    assert [part["text"] for part in document["data"]] == ["Only one chunk now."]


async def test_text_without_an_id_gets_one_from_its_content(rag: Harness) -> None:
    await rag.client.post(KB, json={"name": "docs"})
    ids = [
        (await rag.client.post(f"{KB}/docs/documents", json={"text": "Same words."})).json()["id"]
        for _ in range(2)
    ]
    assert ids[0] == ids[1]
    assert ids[0].startswith("text-")
    assert await chunk_count(rag) == 1


@pytest.mark.parametrize(
    ("filename", "content", "needle", "title"),
    [
        ("notes.txt", b"Plain notes about the Q3 roadmap.", "Q3 roadmap", None),
        ("guide.md", MARKDOWN, "pip install ragway", "Setup guide"),
        ("returns.html", HTML, "30 days", "Returns policy"),
        ("codes.pdf", make_pdf(["Code QX-4471-ZT."], "Codes"), "QX-4471-ZT", "Codes"),
    ],
)
async def test_file_uploads(
    rag: Harness, filename: str, content: bytes, needle: str, title: str | None
) -> None:
    await rag.client.post(KB, json={"name": "docs"})
    response = await rag.client.post(
        f"{KB}/docs/documents",
        files={"file": (filename, content)},
        data={"metadata": json.dumps({"team": "support", "rev": 3})},
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == filename
    document = (await rag.client.get(f"{KB}/docs/documents/{filename}")).json()
    assert needle in " ".join(part["text"] for part in document["data"])
    assert document["source"] == filename
    assert document.get("title") == title
    assert document["metadata"] == {"team": "support", "rev": 3}


async def test_list_get_delete_documents(rag: Harness) -> None:
    await add_docs(rag, "docs", {"a/b.md": "Alpha.", "c": "Gamma.", "d": "Delta."})
    listed = (await rag.client.get(f"{KB}/docs/documents")).json()
    assert sorted(doc["id"] for doc in listed["data"]) == ["a/b.md", "c", "d"]
    page = (await rag.client.get(f"{KB}/docs/documents", params={"limit": 2})).json()
    assert len(page["data"]) == 2
    assert (await rag.client.get(f"{KB}/docs/documents/a/b.md")).json()["id"] == "a/b.md"
    deleted = await rag.client.delete(f"{KB}/docs/documents/a/b.md")
    assert deleted.json()["deleted"] is True
    assert_openai_error(
        await rag.client.get(f"{KB}/docs/documents/a/b.md"), 404, "document_not_found"
    )
    assert_openai_error(
        await rag.client.delete(f"{KB}/docs/documents/x"), 404, "document_not_found"
    )
    assert await chunk_count(rag) == 2


async def test_query_scores_filters_top_k_and_threshold(rag: Harness) -> None:
    await rag.client.post(KB, json={"name": "docs"})
    for doc_id, text, lang in [
        ("zephyr", "The Zephyr router product code is QX-4471-ZT.", "en"),
        ("bananas", "Bananas are yellow and sweet.", "en"),
        ("zephyr-de", "Der Zephyr router product code ist QX-4471-ZT.", "de"),
    ]:
        body = {"id": doc_id, "text": text, "metadata": {"lang": lang}}
        assert (await rag.client.post(f"{KB}/docs/documents", json=body)).status_code == 200
    query = {"query": "Zephyr router product code", "top_k": 3}
    found = (await rag.client.post(f"{KB}/docs/query", json=query)).json()["data"]
    assert found[0]["document_id"] == "zephyr"
    scores = [hit["score"] for hit in found]
    assert scores == sorted(scores, reverse=True)
    assert found[-1]["document_id"] == "bananas"
    filtered = await rag.client.post(f"{KB}/docs/query", json={**query, "where": {"lang": "de"}})
    assert [hit["document_id"] for hit in filtered.json()["data"]] == ["zephyr-de"]
    top1 = await rag.client.post(f"{KB}/docs/query", json={**query, "top_k": 1})
    assert len(top1.json()["data"]) == 1
    above = await rag.client.post(f"{KB}/docs/query", json={**query, "min_score": 0.3})
    assert "bananas" not in {hit["document_id"] for hit in above.json()["data"]}
    hit = found[0]
    assert set(hit) >= {"id", "score", "text", "document_id", "position", "metadata"}
    assert hit["metadata"] == {"lang": "en"}


async def test_bad_input_is_4xx_never_500(rag: Harness) -> None:
    await rag.client.post(KB, json={"name": "docs"})
    docs = f"{KB}/docs/documents"
    cases: list[tuple[Any, int, str | None]] = [
        (
            rag.client.post(f"{KB}/nope/documents", json={"text": "x"}),
            404,
            "knowledge_base_not_found",
        ),
        (rag.client.post(f"{KB}/nope/query", json={"query": "x"}), 404, "knowledge_base_not_found"),
        (rag.client.get(f"{KB}/nope/documents"), 404, "knowledge_base_not_found"),
        (rag.client.delete(f"{KB}/nope"), 404, "knowledge_base_not_found"),
        (rag.client.post(docs, json={"text": ""}), 400, "empty_document"),
        (rag.client.post(docs, json={"text": " \n\t "}), 400, "empty_document"),
        (rag.client.post(docs, files={"file": ("e.txt", b"")}), 400, "empty_document"),
        (rag.client.post(docs, files={"file": ("e.txt", b"   \n")}), 400, "empty_document"),
        (rag.client.post(docs, files={"file": ("x.docx", b"PK..")}), 400, "unsupported_file_type"),
        (rag.client.post(docs, files={"file": ("big.txt", b"a " * 40_000)}), 413, None),
        (rag.client.post(docs, json={"text": "word " * 8000}), 413, "payload_too_large"),
        (rag.client.post(docs, data={"id": "x"}, files={"other": ("a.txt", b"a")}), 400, None),
        (rag.client.post(docs, files={"file": ("bad.pdf", b"%PDF-1.4 broken")}), 400, None),
        (rag.client.post(docs, json={"text": "x", "metadata": {"position": 3}}), 400, None),
        (rag.client.post(docs, json={"text": "x", "metadata": {"a": [1]}}), 400, None),
        (rag.client.post(docs, content=b"{not json"), 400, None),
        (
            rag.client.post(f"{KB}/docs/query", json={"query": "x", "where": {"a": {"$regex": 1}}}),
            400,
            "invalid_filter",
        ),
        (
            rag.client.post(f"{KB}/docs/query", json={"query": "x", "where": {"$and": []}}),
            400,
            "invalid_filter",
        ),
        (rag.client.post(f"{KB}/docs/query", json={"query": ""}), 400, None),
        (rag.client.post(f"{KB}/docs/query", json={"query": "x", "top_k": 0}), 400, None),
        (rag.client.get(docs, params={"limit": 0}), 400, None),
    ]
    for call, status, code in cases:
        assert_openai_error(await call, status, code)
    assert await chunk_count(rag) == 0
