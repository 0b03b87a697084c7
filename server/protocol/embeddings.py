"""Embedding requests."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from server.protocol.common import OpenAIRequest

TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]

EmbeddingInput = (
    Annotated[str, Field(min_length=1)]
    | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    | TokenIds
    | Annotated[list[TokenIds], Field(min_length=1)]
)


class EmbeddingRequest(OpenAIRequest):
    model: str
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None
