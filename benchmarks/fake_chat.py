"""A chat worker that costs nothing: it streams its first token at once. Behind a gateway, the
time to first token is then the gateway's own work, which is what the RAG benchmark measures.
It also answers vLLM's `/tokenize` (4 characters to a token) and reports `max_model_len`.

    python -m benchmarks.fake_chat --port 8101 --model bench-chat
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

MAX_MODEL_LEN = 8192


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def build_app(model: str) -> Starlette:
    async def health(request: Request) -> Response:
        return Response()

    async def models(request: Request) -> Response:
        card = {"id": model, "object": "model", "owned_by": "fake", "max_model_len": MAX_MODEL_LEN}
        return _json({"object": "list", "data": [card]})

    async def tokenize(request: Request) -> Response:
        body = orjson.loads(await request.body())
        text = str(body.get("messages", body.get("prompt", "")))
        return _json({"count": len(text) // 4 + 1, "max_model_len": MAX_MODEL_LEN, "tokens": []})

    async def chat(request: Request) -> Response:
        await request.body()

        async def events() -> AsyncIterator[bytes]:
            for word in ("Hello", " there"):
                delta = {"choices": [{"index": 0, "delta": {"content": word}}], "model": model}
                yield b"data: " + orjson.dumps(delta) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/tokenize", tokenize, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="bench-chat")
    args = parser.parse_args()
    uvicorn.run(build_app(args.model), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
