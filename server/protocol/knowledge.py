"""Knowledge-base API requests, and the `rag` field of a chat request.

Unlike the OpenAI requests, these refuse unknown fields: nothing downstream would read them,
and a misspelt option (`topk`) should be a 400, not silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from server.errors import InvalidRequest
from server.protocol.common import OpenAIRequest
from server.settings import RetrievalOptions

MetadataValue = StrictStr | StrictBool | StrictInt | StrictFloat
TopK = Annotated[int, Field(ge=1, le=100)]
Score = Annotated[float, Field(ge=-1, le=1)]


class KnowledgeRequest(OpenAIRequest):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateKnowledgeBase(KnowledgeRequest):
    name: str
    description: Annotated[str, Field(max_length=4000)] = ""
    embedding_model: str | None = None
    fail_mode: Literal["open", "closed"] | None = None
    chunk_tokens: Annotated[int, Field(ge=16, le=8192)] | None = None
    chunk_overlap: Annotated[int, Field(ge=0)] | None = None


class AddDocument(KnowledgeRequest):
    id: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    text: str
    title: Annotated[str, Field(max_length=1000)] | None = None
    source: Annotated[str, Field(max_length=2000)] | None = None
    metadata: Annotated[dict[str, MetadataValue], Field(max_length=64)] = Field(
        default_factory=dict
    )


class QueryKnowledgeBase(KnowledgeRequest):
    query: Annotated[str, Field(min_length=1)]
    top_k: TopK = 4
    # `where` is Chroma's name for it, `filter` the chat option's; either is accepted.
    where: dict[str, Any] | None = Field(
        default=None, validation_alias=AliasChoices("where", "filter")
    )
    min_score: Score | None = None


class RagOptions(RetrievalOptions):
    """The `rag` object of a chat request (OpenAI SDK: `extra_body={"rag": {...}}`)."""

    knowledge_base: str | None = None


B = TypeVar("B", bound=BaseModel)


def validated(model: type[B], data: Any, param: str) -> B:
    """`data` as `model`, or a 400 naming `param` and the bad field inside it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in (param, *first.get("loc", ())))
        raise InvalidRequest(
            f"Invalid request at `{where}`: {first.get('msg', 'invalid value')}.", param=param
        ) from exc
