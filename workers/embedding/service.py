"""One embeddings request, from parsed body to response JSON: checks the request against the
served model, hands the texts to the batcher, and writes the OpenAI response."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from server.errors import InvalidRequest, ModelNotFound
from workers.embedding.batcher import DynamicBatcher, Embedded, Priority
from workers.embedding.protocol import EmbeddingRequest, ModelCard, ModelList


class EmbeddingService:
    def __init__(
        self,
        batcher: DynamicBatcher,
        *,
        served_model_name: str,
        dimension: int,
        max_inputs_per_request: int,
        created: int,
    ):
        self._batcher = batcher
        self._model = served_model_name
        self._dimension = dimension
        self._max_inputs = max_inputs_per_request
        self._created = created

    @property
    def ready(self) -> bool:
        return self._batcher.running

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=self._model, created=self._created)])

    async def embed(self, request: EmbeddingRequest, priority: Priority | None = None) -> bytes:
        """The response body, serialised. `priority`: the batcher lane (None: by input count)."""
        self._check(request)
        embedded = await self._batcher.embed(request.input, priority)
        return self._render(embedded, base64_=request.encoding_format == "base64")

    def _check(self, request: EmbeddingRequest) -> None:
        if request.model != self._model:
            raise ModelNotFound(request.model)
        if request.dimensions is not None and request.dimensions != self._dimension:
            raise InvalidRequest(
                f"The model `{self._model}` only supports dimensions={self._dimension} "
                f"(got {request.dimensions}).",
                param="dimensions",
            )
        if len(request.input) > self._max_inputs:
            raise InvalidRequest(
                f"Too many inputs: {len(request.input)}; at most {self._max_inputs} per request.",
                param="input",
            )

    def _render(self, embedded: Embedded, *, base64_: bool) -> bytes:
        # Little-endian float32 is what the OpenAI SDK decodes base64 embeddings as.
        vectors = embedded.vectors.astype("<f4", copy=False)
        data: list[dict[str, Any]] = [
            {
                "object": "embedding",
                "index": index,
                # orjson writes numpy rows itself, in float32's shortest round-trip form.
                "embedding": base64.b64encode(row.tobytes()).decode("ascii") if base64_ else row,
            }
            for index, row in enumerate(vectors)
        ]
        tokens = sum(embedded.token_counts)
        body = {
            "object": "list",
            "data": data,
            "model": self._model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
