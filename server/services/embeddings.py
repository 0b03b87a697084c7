"""Embeddings: normalise the input, pick an embedding worker, relay its answer (through the
same load tracking, failover and ejection as chat: server/services/dispatch.py).

Token-id input needs care. LangChain's `OpenAIEmbeddings` splits and tokenises text with
tiktoken's `cl100k_base` and sends the ids, assuming OpenAI's models share that vocabulary.
Our embedding model does not: its tokenizer would read those ids as different words. So the
gateway decodes cl100k_base ids back to text, and the worker only ever sees text.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import orjson

from router.types import WorkerKind
from server.errors import InvalidRequest
from server.protocol.common import parse_request
from server.protocol.embeddings import EmbeddingRequest
from server.services.catalog import Catalog
from server.services.dispatch import Dispatcher, embedding_reroute
from server.services.flow import FlowControl, Go
from server.services.flow_gate import admit, routed_after
from server.settings import LimitsSettings
from server.tenancy.principal import ANONYMOUS, Principal
from server.tenancy.scopes import require_model
from server.upstream.client import Reply

EMBEDDINGS = "/v1/embeddings"
# Decoding this many tokens or more is moved off the event loop.
_INLINE_DECODE_TOKENS = 20_000


class TokenDecoder(Protocol):
    """What ragway needs of a tiktoken `Encoding`."""

    def decode_batch(self, batch: list[list[int]]) -> list[str]: ...


def _decode(decoder: TokenDecoder, batch: list[list[int]]) -> list[str]:
    try:
        return decoder.decode_batch(batch)
    except (KeyError, ValueError, OverflowError) as exc:
        raise InvalidRequest(
            "Token ids in `input` must be cl100k_base token ids.", param="input"
        ) from exc


class EmbeddingService:
    def __init__(
        self,
        catalog: Catalog,
        dispatch: Dispatcher,
        decoder: TokenDecoder,
        limits: LimitsSettings | None = None,
        flow: FlowControl | None = None,
    ):
        self._flow = flow
        self._limits = limits if limits is not None else LimitsSettings()
        self._catalog = catalog
        self._dispatch = dispatch
        self._decoder = decoder

    async def embed(
        self, raw: bytes, request_id: str, principal: Principal = ANONYMOUS
    ) -> tuple[str, Reply]:
        """Returns the model asked for (for metrics) and the worker's reply."""
        data, request = await parse_request(raw, EmbeddingRequest, self._limits)
        require_model(principal, request.model, self._catalog.served_name)
        route = self._catalog.route(WorkerKind.EMBEDDING, request.model, request_id)
        changed = route.served_model != request.model
        if changed:
            data["model"] = route.served_model
        texts = await self._texts_from_tokens(request.input)
        if texts is not None:
            data["input"] = texts
            changed = True
        body = orjson.dumps(data) if changed else raw
        # Last before dispatch: from admission to the worker's in-flight count, nothing awaits.
        if self._flow is not None and self._flow.enabled:
            kind = WorkerKind.EMBEDDING
            admission = admit(self._flow, kind, route, principal, len(raw) // 4)
            if admission is not Go.HERE:
                reroute = embedding_reroute(self._catalog, request.model, request_id)
                route = await routed_after(self._flow, admission, kind, route, principal, reroute)
        reply = await self._dispatch.post(
            route, embedding_reroute(self._catalog, request.model, request_id), EMBEDDINGS, body
        )
        return request.model, reply

    async def _texts_from_tokens(
        self, value: str | list[str] | list[int] | list[list[int]]
    ) -> list[str] | str | None:
        """Decoded text for token-id input; None when the input already is text."""
        if isinstance(value, str) or isinstance(value[0], str):
            return None
        if isinstance(value[0], int):
            batch: list[list[int]] = [value]
        else:
            batch = value
        if sum(len(ids) for ids in batch) < _INLINE_DECODE_TOKENS:
            texts = _decode(self._decoder, batch)
        else:
            texts = await asyncio.to_thread(_decode, self._decoder, batch)
        return texts[0] if isinstance(value[0], int) else texts
