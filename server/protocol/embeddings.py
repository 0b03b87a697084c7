"""Embedding requests."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from server.protocol.common import OpenAIRequest, check_inputs
from server.settings import LimitsSettings

# fail_fast: a list's first bad item ends its validation, so a long list of bad items costs
# one error, not one error object per item (lengths are capped before validation too).
TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, fail_fast=True)]

EmbeddingInput = (
    Annotated[str, Field(min_length=1)]
    | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, fail_fast=True)]
    | TokenIds
    | Annotated[list[TokenIds], Field(min_length=1, fail_fast=True)]
)


class EmbeddingRequest(OpenAIRequest):
    model: str
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None

    @classmethod
    def check_sizes(cls, data: dict[str, Any], limits: LimitsSettings) -> None:
        check_inputs(data, "input", limits)
