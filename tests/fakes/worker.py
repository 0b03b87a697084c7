"""A scriptable OpenAI-compatible worker for in-process tests of the gateway.

It records every request it receives, so tests can assert on exactly what the gateway sent,
and its behaviour (error statuses, broken streams) is set per test through `FakeWorker`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def chunk_event(model: str, text: str, index: int = 0) -> bytes:
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": index, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def fake_vector(text: str, dims: int = 64) -> list[float]:
    """A deterministic bag-of-words vector: texts sharing words are close, as with a real model."""
    vector = [0.0] * dims
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dims] += 1.0
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else [1.0] + [0.0] * (dims - 1)


def fake_token_count(body: dict[str, Any]) -> int:
    """vLLM's /tokenize, roughly: a word is a token, a chat message costs 4 more."""
    if "messages" in body:
        return sum(len(str(m.get("content", "")).split()) + 4 for m in body["messages"]) + 1
    return len(str(body["prompt"]).split())


def usage_event(model: str) -> bytes:
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def fake_response(body: dict[str, Any], text: str = "Hello") -> dict[str, Any]:
    words = len(orjson.dumps(body["input"])) // 4  # about a token per 4 bytes
    return {
        "id": body.get("request_id", "resp_fake"),
        "object": "response",
        "created_at": 1,
        "model": body["model"],
        "status": "completed",
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True),
        "output": [
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "usage": {"input_tokens": words, "output_tokens": 1, "total_tokens": words + 1},
    }


def response_event(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **payload}) + b"\n\n"


def response_events(response: dict[str, Any]) -> list[bytes]:
    """vLLM's event sequence for one text message, shortened."""
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    text = response["output"][0]["content"][0]["text"]
    return [
        response_event("response.created", {"response": started, "sequence_number": 0}),
        response_event(
            "response.output_text.delta",
            {
                "item_id": "msg_fake",
                "output_index": 0,
                "content_index": 0,
                "delta": text,
                "logprobs": [],
                "sequence_number": 1,
            },
        ),
        response_event("response.completed", {"response": response, "sequence_number": 2}),
    ]


@dataclass
class FakeWorker:
    models: list[str]
    kind: str = "chat"
    # Behaviour knobs.
    status: int = 200
    error_body: bytes = (
        b'{"error": {"message": "bad", "type": "BadRequestError", "param": null, "code": 400}}'
    )
    stream_events: list[bytes] = field(default_factory=list)
    stream_tail: bytes = b"data: [DONE]\n\n"
    # The stream's line ending: events are scripted with LF and sent with this one.
    line: bytes = b"\n"
    healthy: bool = True
    received: list[dict[str, Any]] = field(default_factory=list)
    raw_bodies: list[bytes] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    # Like vLLM: POST /tokenize counts tokens and reports the context length.
    max_model_len: int = 4096
    tokenize_requests: list[dict[str, Any]] = field(default_factory=list)
    # The assistant message of a non-streamed answer, and its finish reason.
    message: dict[str, Any] = field(
        default_factory=lambda: {"role": "assistant", "content": "Hello"}
    )
    finish_reason: str = "stop"
    # When set, each chat/completions request waits for one release() after it is recorded:
    # a worker busy for exactly as long as a test wants.
    gate: asyncio.Semaphore | None = None

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/health", self._health),
                Route("/v1/models", self._models),
                Route("/v1/chat/completions", self._generate, methods=["POST"]),
                Route("/v1/completions", self._generate, methods=["POST"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/tokenize", self._tokenize, methods=["POST"]),
            ]
        )

    async def _record(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        self.raw_bodies.append(raw)
        self.headers_seen.append(dict(request.headers))
        body: dict[str, Any] = orjson.loads(raw)
        self.received.append(body)
        return body

    async def _health(self, request: Request) -> Response:
        return Response(status_code=200 if self.healthy else 503)

    async def _models(self, request: Request) -> Response:
        data = [{"id": m, "object": "model", "created": 1, "owned_by": "fake"} for m in self.models]
        return Response(
            orjson.dumps({"object": "list", "data": data}), media_type="application/json"
        )

    async def _generate(self, request: Request) -> Response:
        body = await self._record(request)
        if self.gate is not None:
            await self.gate.acquire()
        if self.status != 200:
            return Response(self.error_body, self.status, media_type="application/json")
        if body.get("stream"):
            events = self.stream_events or [chunk_event(body["model"], w) for w in ("Hel", "lo")]
            # Usage comes last before [DONE]; a stream scripted to break never gets there.
            if self.stream_tail and (body.get("stream_options") or {}).get("include_usage"):
                events = [*events, usage_event(body["model"])]
            return StreamingResponse(self._stream(events), media_type="text/event-stream")
        answer = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": self.message, "finish_reason": self.finish_reason}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
        return Response(orjson.dumps(answer), media_type="application/json")

    async def _responses(self, request: Request) -> Response:
        """vLLM's stateless /v1/responses: the id is the request's `request_id`, the input
        tokens are the input's words (so a longer history counts more)."""
        body = await self._record(request)
        if self.status != 200:
            return Response(self.error_body, self.status, media_type="application/json")
        response = fake_response(body)
        if not body.get("stream"):
            return Response(orjson.dumps(response), media_type="application/json")
        events = self.stream_events or response_events(response)
        # vLLM ends a Responses stream with its `response.completed` event, not `[DONE]`.
        return StreamingResponse(self._stream(events, tail=False), media_type="text/event-stream")

    async def _stream(self, events: list[bytes], tail: bool = True) -> AsyncIterator[bytes]:
        for event in [*events, self.stream_tail] if tail and self.stream_tail else events:
            yield event if self.line == b"\n" else event.replace(b"\n", self.line)

    async def _embeddings(self, request: Request) -> Response:
        body = await self._record(request)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(str(text))}
            for i, text in enumerate(inputs)
        ]
        answer = {"object": "list", "data": data, "model": body["model"], "usage": {}}
        return Response(orjson.dumps(answer), media_type="application/json")

    async def _tokenize(self, request: Request) -> Response:
        body: dict[str, Any] = orjson.loads(await request.body())
        self.tokenize_requests.append(body)
        count = fake_token_count(body)
        answer = {"count": count, "max_model_len": self.max_model_len, "tokens": [0] * count}
        return Response(orjson.dumps(answer), media_type="application/json")


class HostRouter(httpx.AsyncBaseTransport):
    """Sends each request to the in-process app registered for its host, or raises the
    exception registered for it (to simulate transport failures): always (`failures`), or for
    the next few generation requests (`fail_next`)."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.AsyncBaseTransport] = {}
        self.failures: dict[str, Exception] = {}
        self.fail_next: dict[str, list[Exception]] = {}
        self.generation_hosts: list[str] = []

    def add(self, host: str, worker: FakeWorker) -> None:
        self.apps[host] = httpx.ASGITransport(app=worker.app())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if request.url.path.startswith("/v1/") and request.method == "POST":
            self.generation_hosts.append(host)
            queued = self.fail_next.get(host)
            if queued:
                raise queued.pop(0)
            failure = self.failures.get(host)
            if failure is not None:
                raise failure
        return await self.apps[host].handle_async_request(request)
