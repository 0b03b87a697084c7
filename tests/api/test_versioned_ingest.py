"""Versioned ingest, in-process: two concurrent ingests of one document id never leave a mix,
readers never see a half-written document, and unnamed uploads do not replace each other."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness
from tests.api.rag_gateway import rag_gateway

KB = "/v1/knowledge_bases"
ROUNDS = 50
TEXT_A = " ".join(f"Alpha sentence number {i} about gateways." for i in range(40))
TEXT_B = " ".join(f"Bravo line {i} on vector stores and chunking." for i in range(70))
HASHES = {hashlib.sha256(t.encode()).hexdigest() for t in (TEXT_A, TEXT_B)}


@pytest.fixture
async def rag(tmp_path: Path, token_decoder: TokenDecoder) -> AsyncIterator[Harness]:
    async with rag_gateway(tmp_path, token_decoder) as harness:
        created = await harness.client.post(KB, json={"name": "docs", "chunk_tokens": 32})
        assert created.status_code == 200, created.text
        yield harness


async def _document(rag: Harness) -> dict[str, object]:
    response = await rag.client.get(f"{KB}/docs/documents/doc")
    assert response.status_code == 200, response.text
    document: dict[str, object] = response.json()
    return document


def _assert_one_whole_version(document: dict[str, object]) -> None:
    parts = document["data"]
    assert isinstance(parts, list)
    assert [p["position"] for p in parts] == list(range(len(parts)))  # no gap, no repeat
    assert document["content_sha256"] in HASHES
    text = "".join(p["text"] for p in parts)
    assert ("Alpha" in text) != ("Bravo" in text)  # never a mix


async def test_concurrent_ingests_of_one_document_leave_exactly_one_version(
    rag: Harness,
) -> None:
    winners: set[str] = set()
    for round_ in range(ROUNDS):
        texts = (TEXT_A, TEXT_B) if round_ % 2 else (TEXT_B, TEXT_A)  # either starts first
        a, b = await asyncio.gather(
            *(rag.client.post(f"{KB}/docs/documents", json={"id": "doc", "text": t}) for t in texts)
        )
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        sizes = {a.json()["chunks"], b.json()["chunks"]}
        document = await _document(rag)
        winners.add(str(document["content_sha256"]))
        _assert_one_whole_version(document)
        assert document["chunks"] in sizes
        # Nothing else is stored: the collection holds exactly this version's chunks.
        card = (await rag.client.get(f"{KB}/docs")).json()
        assert card["chunks"] == document["chunks"]
    assert winners == HASHES  # each text was the surviving version in some rounds


async def test_readers_never_see_a_half_written_document(rag: Harness) -> None:
    await rag.client.post(f"{KB}/docs/documents", json={"id": "doc", "text": TEXT_A})
    writing = True

    async def write() -> None:
        nonlocal writing
        for i in range(10):
            text = TEXT_B if i % 2 == 0 else TEXT_A
            await rag.client.post(f"{KB}/docs/documents", json={"id": "doc", "text": text})
        writing = False

    async def read() -> int:
        seen = 0
        while writing:
            _assert_one_whole_version(await _document(rag))
            found = await rag.client.post(
                f"{KB}/docs/query", json={"query": "sentence line", "top_k": 50}
            )
            ids = [c["id"] for c in found.json()["data"]]
            assert len(ids) == len(set(ids))
            assert {c["document_id"] for c in found.json()["data"]} == {"doc"}
            seen += 1
            await asyncio.sleep(0)
        return seen

    _, reads = await asyncio.gather(write(), read())
    assert reads > 0


async def test_unnamed_uploads_get_distinct_ids(rag: Harness) -> None:
    ids = []
    for text in (b"First unnamed upload.", b"Second unnamed upload."):
        # A file part with an empty file name (httpx would drop it), and no id field.
        body = (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename=""\r\n'
            b"Content-Type: text/plain\r\n\r\n" + text + b"\r\n--b--\r\n"
        )
        response = await rag.client.post(
            f"{KB}/docs/documents",
            content=body,
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    assert ids[0] != ids[1]
    assert all(i.startswith("upload-") for i in ids)
