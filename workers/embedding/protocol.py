"""Wire models of the embeddings API, and parsing a body into them with OpenAI-shaped 400s."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from server.errors import InvalidRequest

TOKEN_IDS_MESSAGE = (
    "This embedding worker takes text only; token-id input (a list of integers, or a list of "
    "such lists) is not supported. The ragway gateway decodes token ids (tiktoken "
    "cl100k_base) to text before they reach a worker: send text, or send the ids through "
    "the gateway."
)

NonEmptyText = Annotated[str, Field(min_length=1)]


class EmbeddingRequest(BaseModel):
    # Unknown fields are ignored: the gateway forwards bodies that may carry other servers'
    # extensions, and none of them changes what this worker computes.
    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str
    # A single string arrives here as a one-element list.
    input: Annotated[list[NonEmptyText], Field(min_length=1)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(strict=True, ge=1)] | None = None
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value:
                raise PydanticCustomError("empty_input", "input must not be an empty string")
            return [value]
        if isinstance(value, list) and value and _is_token_ids(value[0]):
            raise PydanticCustomError("token_ids", TOKEN_IDS_MESSAGE)
        if not isinstance(value, list):
            raise PydanticCustomError("input_type", "input must be a string or a list of strings")
        return value


def _is_token_ids(first: Any) -> bool:
    # bool is an int subclass, but `[true]` is a wrong type, not token ids.
    return (isinstance(first, int) and not isinstance(first, bool)) or isinstance(first, list)


def parse_embedding_request(raw: bytes) -> EmbeddingRequest:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return EmbeddingRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc.errors(include_url=False)) from exc


def invalid_request(errors: Iterable[Mapping[str, Any]]) -> InvalidRequest:
    """The first of pydantic's (or FastAPI's) validation errors, as OpenAI's 400."""
    first: Mapping[str, Any] = next(iter(errors), {})
    # FastAPI puts "body" first; OpenAI's `param` names the top-level field.
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    where = f" at `{'.'.join(loc)}`" if loc else ""
    message = str(first.get("msg", "invalid value")).rstrip(".")
    return InvalidRequest(f"Invalid request{where}: {message}.", param=loc[0] if loc else None)


class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    """The response shape, for the OpenAPI schema and for tests. The service writes the same
    JSON straight from numpy with orjson: about 4x faster than through these models (32 x 384
    floats), and about half the bytes, since float32's shortest form is shorter than float64's."""

    object: Literal["list"] = "list"
    data: list[EmbeddingObject]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ragway"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
