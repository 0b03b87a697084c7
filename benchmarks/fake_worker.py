"""A fast fake OpenAI-compatible worker, so that a benchmark measures the gateway, not the model.

It answers like vLLM's OpenAI server: `/health`, `/v1/models`, `/metrics` (the
`vllm:num_requests_running` gauges ragway scrapes), `/v1/chat/completions` and `/v1/completions`
(JSON, or SSE with `stream_options.include_usage`), and `/v1/embeddings` (float or base64).
Answers have `--tokens` tokens (fewer if the request's `max_tokens` asks for fewer). A stream's
first token comes after `--delay-ms`, the rest at `--tokens-per-s` (0: as fast as the socket
takes them), every event its own write; a non-streamed answer comes whole after `--delay-ms`.

It is a bare ASGI callable under uvicorn (httptools, uvloop) with no framework and the bytes
of each event built from precomputed pieces, so its own cost per request stays a fraction of
any gateway's. An answer's `id` is `chatcmpl-<x-request-id>` when the caller sends that header,
so the same request sent direct and through a gateway can be compared byte for byte.

    python -m benchmarks.fake_worker --port 8100 --tokens 32 --tokens-per-s 2000 --delay-ms 0
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import struct
import time
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from starlette.types import Receive, Scope, Send

TOKEN_TEXT = " hi"
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    model: str = "bench-chat"
    embedding_model: str = "bench-embed"
    tokens: int = 16
    tokens_per_s: float = 0.0
    delay_ms: float = 0.0
    dims: int = 384
    # SSE line ending: LF like vLLM, or CRLF / CR (tests of ragway's SSE framing).
    line_ending: bytes = b"\n"


@dataclass(frozen=True, slots=True)
class _Kind:
    """What differs between chat and text completions on the wire."""

    prefix: str
    obj: str
    chunk_obj: str
    first_choice: bytes  # the first streamed choice (chat: the assistant role)
    token_choice: bytes
    last_choice: bytes  # finish_reason
    whole_choice: bytes  # non-streaming, with the {text} of all tokens


def _choice(**fields: Any) -> bytes:
    return orjson.dumps({"index": 0, **fields, "logprobs": None})


def _kinds(answer: str) -> dict[str, _Kind]:
    text = orjson.dumps(answer)
    chat_message = b'{"role":"assistant","content":' + text + b',"tool_calls":[]}'
    return {
        "/v1/chat/completions": _Kind(
            "chatcmpl-",
            "chat.completion",
            "chat.completion.chunk",
            _choice(delta={"role": "assistant", "content": ""}, finish_reason=None),
            _choice(delta={"content": TOKEN_TEXT}, finish_reason=None),
            _choice(delta={"content": ""}, finish_reason="length", stop_reason=None),
            b'{"index":0,"message":'
            + chat_message
            + b',"logprobs":null,"finish_reason":"length","stop_reason":null}',
        ),
        "/v1/completions": _Kind(
            "cmpl-",
            "text_completion",
            "text_completion",
            _choice(text="", finish_reason=None),
            _choice(text=TOKEN_TEXT, finish_reason=None),
            _choice(text="", finish_reason="length", stop_reason=None),
            b'{"index":0,"text":'
            + text
            + b',"logprobs":null,"finish_reason":"length","stop_reason":null}',
        ),
    }


class FakeWorker:
    """The ASGI app. `in_flight` feeds the vLLM-style gauge on /metrics."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self.in_flight = 0
        self.served = 0
        self._created = int(time.time())
        self._ids = itertools.count()
        self._kinds = {n: _kinds(TOKEN_TEXT * n) for n in range(config.tokens + 1)}
        vector = [round((i % 17) / 17 - 0.5, 6) for i in range(config.dims)]
        self._vector = {
            "float": orjson.dumps(vector),
            "base64": b'"' + base64.b64encode(struct.pack(f"<{config.dims}f", *vector)) + b'"',
        }
        cards = [
            {
                "id": name,
                "object": "model",
                "created": self._created,
                "owned_by": "fake",
                "root": name,
                "max_model_len": 8192,
            }
            for name in (config.model, config.embedding_model)
        ]
        self._models = orjson.dumps({"object": "list", "data": cards})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path in ("/v1/chat/completions", "/v1/completions"):
            body = await _read_body(receive)
            self.in_flight += 1
            try:
                await self._generate(path, scope, body, send)
            finally:
                self.in_flight -= 1
                self.served += 1
        elif path == "/v1/embeddings":
            await _respond(send, 200, self._embeddings(await _read_body(receive)))
        elif path == "/tokenize":
            await _respond(send, 200, _tokenize(await _read_body(receive)))
        elif path == "/health":
            await _respond(send, 200, b"")
        elif path == "/v1/models":
            await _respond(send, 200, self._models)
        elif path == "/metrics":
            await _respond(send, 200, self._metrics(), b"text/plain; version=0.0.4")
        else:
            await _respond(send, 404, b'{"error":{"message":"not found","type":"NotFound"}}')

    async def _generate(self, path: str, scope: Scope, raw: bytes, send: Send) -> None:
        try:
            request = orjson.loads(raw)
            limit = request.get("max_tokens") or request.get("max_completion_tokens")
        except (orjson.JSONDecodeError, AttributeError):
            await _respond(send, 400, b'{"error":{"message":"bad JSON","type":"BadRequest"}}')
            return
        count = self.config.tokens if not limit else min(int(limit), self.config.tokens)
        kind = self._kinds[count][path]
        rid = _header(scope, b"x-request-id") or f"{next(self._ids):x}"
        ident = b'{"id":"%s%s","object":"' % (kind.prefix.encode(), rid.encode())
        rest = b'","created":%d,"model":%s,' % (
            self._created,
            orjson.dumps(request.get("model", self.config.model)),
        )
        usage = b'"usage":{"prompt_tokens":%d,"total_tokens":%d,"completion_tokens":%d}' % (
            len(raw) // 4,
            len(raw) // 4 + count,
            count,
        )
        if request.get("stream"):
            include_usage = (request.get("stream_options") or {}).get("include_usage")
            head = ident + kind.chunk_obj.encode() + rest
            await self._stream(send, head, kind, count, usage if include_usage else b"")
        else:
            # Pacing is for streams; a whole answer comes after the time to first token only,
            # so that non-streaming latency is the gateways' and not the tokens'.
            await self._pause(self.config.delay_ms / 1000)
            head = ident + kind.obj.encode() + rest
            choices = b'"choices":[' + kind.whole_choice + b"],"
            await _respond(send, 200, head + choices + usage + b"}")

    def _gap(self) -> float:
        return 1 / self.config.tokens_per_s if self.config.tokens_per_s > 0 else 0.0

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def _stream(self, send: Send, head: bytes, kind: _Kind, count: int, usage: bytes) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        await self._pause(self.config.delay_ms / 1000)
        event = b"data: " + head + b'"choices":['
        blank = self.config.line_ending * 2

        async def emit(choice: bytes) -> None:
            await send(
                {
                    "type": "http.response.body",
                    "body": event + choice + b"]}" + blank,
                    "more_body": True,
                }
            )

        await emit(kind.first_choice)
        gap, started = self._gap(), time.perf_counter()
        for number in range(count):
            if gap and number:
                await self._pause(started + number * gap - time.perf_counter())
            await emit(kind.token_choice)
        await emit(kind.last_choice)
        if usage:
            tail = b"data: " + head + b'"choices":[],' + usage + b"}" + blank
            await send({"type": "http.response.body", "body": tail, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]" + blank})

    def _embeddings(self, raw: bytes) -> bytes:
        request = orjson.loads(raw)
        inputs = request.get("input", "")
        count = (
            1 if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)) else len(inputs)
        )
        vector = self._vector["base64" if request.get("encoding_format") == "base64" else "float"]
        data = b",".join(
            b'{"object":"embedding","index":%d,"embedding":%s}' % (i, vector) for i in range(count)
        )
        usage = b'{"prompt_tokens":%d,"total_tokens":%d}' % (len(raw) // 4, len(raw) // 4)
        return b'{"object":"list","data":[%s],"model":%s,"usage":%s}' % (
            data,
            orjson.dumps(request.get("model", self.config.embedding_model)),
            usage,
        )

    def _metrics(self) -> bytes:
        labels = f'{{model_name="{self.config.model}"}}'
        return (
            f"vllm:num_requests_running{labels} {self.in_flight}\n"
            f"vllm:num_requests_waiting{labels} 0\n"
            f"vllm:kv_cache_usage_perc{labels} 0.0\n"
        ).encode()


def _tokenize(raw: bytes) -> bytes:
    """vLLM's /tokenize, roughly: a word is a token (RAG's token budget asks for counts)."""
    request = orjson.loads(raw)
    if "messages" in request:
        text = " ".join(str(m.get("content", "")) for m in request["messages"])
    else:
        text = str(request.get("prompt", ""))
    count = len(text.split())
    return orjson.dumps({"count": count, "max_model_len": 8192, "tokens": [0] * count})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, ctype: bytes = b"application/json"
) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


_DEFAULT = WorkerConfig()


_LINE_ENDINGS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fake_worker", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--model", default=_DEFAULT.model)
    parser.add_argument("--embedding-model", default=_DEFAULT.embedding_model)
    parser.add_argument("--tokens", type=int, default=_DEFAULT.tokens, help="tokens per answer")
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="per stream; 0: unpaced")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="time to the first token")
    parser.add_argument("--dims", type=int, default=_DEFAULT.dims, help="embedding size")
    parser.add_argument("--line-ending", choices=list(_LINE_ENDINGS), default="lf",
                        help="SSE framing")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = WorkerConfig(
        args.model,
        args.embedding_model,
        args.tokens,
        args.tokens_per_s,
        args.delay_ms,
        args.dims,
        _LINE_ENDINGS[args.line_ending],
    )
    uvicorn.run(
        FakeWorker(config),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
