"""Counting tokens with the served model's own tokenizer, by asking the worker that serves it.

vLLM's `POST /tokenize` applies the model's tokenizer and, for `messages`, its chat template,
and reports the model's `max_model_len`. That is exact for whatever model a worker serves, in
any deployment: the Helm chart's gateway pod has no model files to load a tokenizer from, and
loading transformers would add seconds and hundreds of MB to the gateway. The cost is a few
small requests per RAG chat, sent concurrently (measured in benchmarks/README.md).

The prompt is counted once, as the worker will render it (while retrieval runs); each passage is
counted on its own, so that `augment` can drop passages without asking again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson

from server.errors import UpstreamBadResponse
from server.services.catalog import Route
from server.upstream.client import UpstreamClient

# Fields of a chat request that change how the worker renders the prompt.
_TEMPLATE_FIELDS = ("tools", "chat_template", "chat_template_kwargs")


class TokenCounter(Protocol):
    async def prompt(self, route: Route, request: Mapping[str, Any]) -> tuple[int, int]:
        """Tokens of the request's prompt as the worker renders it, and the model's window."""
        ...

    async def count(self, route: Route, texts: Sequence[str]) -> dict[str, int]:
        """Tokens of each text on its own."""
        ...


def _parsed(content: bytes) -> tuple[int, int]:
    try:
        data = orjson.loads(content)
        return int(data["count"]), int(data["max_model_len"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UpstreamBadResponse(f"the worker's /tokenize answer is malformed: {exc}") from exc


class WorkerTokenCounter:
    def __init__(self, upstream: UpstreamClient, concurrency: int = 16):
        self._upstream = upstream
        # Bounds the gateway's /tokenize calls in flight (a RAG chat asks once per passage):
        # a burst of RAG chats cannot take the request pool's connections.
        self._slots = asyncio.Semaphore(concurrency)

    async def _tokenize(self, route: Route, body: dict[str, Any]) -> tuple[int, int]:
        url = route.backend.url + "/tokenize"
        async with self._slots:
            reply = await self._upstream.post(url, orjson.dumps(body), route.headers)
        reply.raise_for_status()
        return _parsed(reply.content)

    async def prompt(self, route: Route, request: Mapping[str, Any]) -> tuple[int, int]:
        chat: dict[str, Any] = {
            "model": route.served_model,
            "messages": request["messages"],
            "add_generation_prompt": True,
        }
        chat.update({k: request[k] for k in _TEMPLATE_FIELDS if request.get(k) is not None})
        return await self._tokenize(route, chat)

    async def count(self, route: Route, texts: Sequence[str]) -> dict[str, int]:
        unique = list(dict.fromkeys(texts))
        results = await asyncio.gather(
            *(
                self._tokenize(
                    route,
                    {"model": route.served_model, "prompt": text, "add_special_tokens": False},
                )
                for text in unique
            )
        )
        return {text: n for text, (n, _) in zip(unique, results, strict=True)}
