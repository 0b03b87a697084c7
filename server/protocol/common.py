"""Parsing a request body into a wire model, with OpenAI-shaped 400s for anything wrong."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from server.errors import InvalidRequest


class OpenAIRequest(BaseModel):
    """Base of every request model: unknown fields are kept (vLLM accepts many beyond OpenAI's)
    and forwarded untouched, since ragway relays the original body."""

    model_config = ConfigDict(extra="allow", frozen=True)


M = TypeVar("M", bound=OpenAIRequest)


def parse_body(raw: bytes, model: type[M]) -> tuple[dict[str, Any], M]:
    """The body as a dict (to forward) and as the typed model (to read)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return data, model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _invalid(exc: ValidationError) -> InvalidRequest:
    first = exc.errors(include_url=False)[0]
    loc = first.get("loc", ())
    # OpenAI names the top-level field in `param`; the full path goes in the message.
    param = str(loc[0]) if loc else None
    where = " at `" + ".".join(str(part) for part in loc) + "`" if loc else ""
    return InvalidRequest(
        f"Invalid request{where}: {first.get('msg', 'invalid value')}.", param=param
    )
