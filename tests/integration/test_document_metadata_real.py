"""Document-level metadata on real processes: a gateway (`python -m server`) over a real Chroma
server (`chroma run`) and the fake embedding worker. A 300 KB metadata value is stored once (on
the document's first chunk), counted in Chroma's own chunk metadatas, and still shown whole
with the document and with every query hit; small values stay filterable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import chromadb
import httpx
import pytest

from benchmarks import targets
from benchmarks.procs import Proc, running
from tests.integration.rag_support import Gateway, chroma_server

pytestmark = pytest.mark.stack

BIG = "x" * 300_000
WORDS = " ".join(f"word{i}" for i in range(600))
WHOLE = {"big": BIG, "lang": "en", "rev": 3}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, str]]:
    procs: list[Proc] = []
    with running(procs), chroma_server(tmp_path / "chroma", tmp_path / "chroma.log") as chroma:
        worker = targets.fake_worker(tmp_path, None, tokens=8, tokens_per_s=0, delay_ms=0)
        procs.append(worker)
        config = {
            "host": "127.0.0.1",
            "workers": [
                {"name": f"{kind}-0", "url": worker.base_url.removesuffix("/v1"), "kind": kind}
                for kind in ("chat", "embedding")
            ],
            "rag": {"chroma_url": chroma, "store_timeout": 10},
            "limits": {"max_metadata_value_bytes": 400_000, "max_metadata_bytes": 500_000},
        }
        server = Gateway(config, tmp_path / "gateway.log")
        try:
            server.start()
            yield server.url, chroma
        finally:
            server.stop()


def test_a_300_kb_value_is_stored_once_and_shown_whole(gateway: tuple[str, str]) -> None:
    url, chroma = gateway
    with httpx.Client(base_url=url + "/v1/knowledge_bases/", timeout=60) as client:
        kb = {"name": "kb", "chunk_tokens": 16, "chunk_overlap": 0}
        kb["embedding_model"] = "bench-embed"
        assert client.post(url + "/v1/knowledge_bases", json=kb).status_code == 200
        body = {"id": "d", "text": WORDS, "metadata": WHOLE}
        added = client.post("/kb/documents", json=body)
        assert added.status_code == 200, added.text
        chunks = added.json()["chunks"]
        assert chunks > 20

        parts = urlsplit(chroma)
        store = chromadb.HttpClient(host=parts.hostname or "", port=parts.port or 8000)
        metas = store.get_collection("ragway-kb").get(include=["metadatas"])["metadatas"] or []
        assert len(metas) == chunks
        stored = sum(len(str(v)) for m in metas for v in m.values())
        assert 300_000 <= stored < 300_000 + 500 * chunks, stored  # not 300 KB x chunks

        assert client.get("/kb/documents/d").json()["metadata"] == WHOLE
        query = {"query": "word300", "top_k": 5, "where": {"lang": "en"}}
        hits = client.post("/kb/query", json=query).json()["data"]
        assert len(hits) == 5
        assert all(h["metadata"] == WHOLE for h in hits)
        refused = client.post("/kb/query", json={"query": "q", "where": {"big": BIG}})
        assert refused.status_code == 400
        assert "chunk_metadata_value_bytes" in refused.json()["error"]["message"]
