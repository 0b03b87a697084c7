"""LangChain's OpenAI classes, unchanged but for base_url, against the real stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openai
import pytest
from langchain_openai import ChatOpenAI, OpenAI, OpenAIEmbeddings

from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.stack


def test_chat_openai_invoke_and_stream(stack: RunningStack) -> None:
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=stack.base_url, api_key="x", max_tokens=12)
    reply = llm.invoke("Name a colour.")
    assert isinstance(reply.content, str)
    assert reply.content
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] > 0
    pieces = [chunk.content for chunk in llm.stream("Name a fruit.")]
    assert len(pieces) > 1
    assert "".join(str(p) for p in pieces)


def test_openai_completions_llm(stack: RunningStack) -> None:
    llm = OpenAI(model="smollm2-135m-instruct", base_url=stack.base_url, api_key="x", max_tokens=8)
    assert llm.invoke("The capital of France is")


def test_openai_embeddings_sends_token_ids_and_gets_the_text_vector(
    stack: RunningStack, offline_tiktoken: Path
) -> None:
    texts = ["LangChain tokenises with cl100k_base before sending.", "Short one."]
    # base_url is a pydantic alias of openai_api_base, which the mypy plugin does not see.
    embedder = OpenAIEmbeddings(
        model="text-embedding-3-small",
        base_url=stack.base_url,  # type: ignore[call-arg]
        api_key="x",
    )
    vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
    query = np.asarray(embedder.embed_query(texts[0]), dtype=np.float32)
    direct = openai.OpenAI(base_url=stack.base_url, api_key="x").embeddings.create(
        model="all-minilm-l6-v2", input=texts, encoding_format="float"
    )
    expected = np.asarray([d.embedding for d in direct.data], dtype=np.float32)
    assert vectors.shape == (2, 384)
    # LangChain re-normalises averaged chunk vectors in float64; allow for that rounding.
    assert np.max(np.abs(vectors - expected)) < 1e-5
    assert np.max(np.abs(query - expected[0])) < 1e-5
