"""Parsing a request body into a wire model, with OpenAI-shaped 400s for anything wrong.

Work is bounded before it is done: nesting depth is checked on the raw bytes, list lengths
before the (union) validation that would otherwise build an error per bad item, and large
bodies are decoded in a worker thread rather than on the event loop.
"""

from __future__ import annotations

import asyncio
import re
from array import array
from itertools import accumulate
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from server.errors import InvalidRequest
from server.settings import LimitsSettings

_DEFAULT_LIMITS = LimitsSettings()
# In a body orjson has accepted, a backslash is always an escape inside a string.
_ESCAPED = re.compile(rb'\\["\\]')
_STRINGS = re.compile(rb'"[^"]*"')
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class OpenAIRequest(BaseModel):
    """Base of every request model: unknown fields are kept (vLLM accepts many beyond OpenAI's)
    and forwarded untouched, since ragway relays the original body."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @classmethod
    def check_sizes(cls, data: dict[str, Any], limits: LimitsSettings) -> None:
        """Refuses lists over their caps before validation looks at their items."""


M = TypeVar("M", bound=OpenAIRequest)


def too_deep(raw: bytes, limit: int) -> bool:
    """Whether valid JSON `raw` nests objects and arrays more than `limit` levels deep.

    Linear, and without a Python step per character: drop string contents, keep only the
    brackets as +1/-1 signed bytes, and take the largest running sum."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    unquoted = _STRINGS.sub(b"", _ESCAPED.sub(b"", raw))
    steps = array("b", unquoted.translate(_STEPS, _NOT_BRACKET))
    return max(accumulate(steps), default=0) > limit


def check_list(data: dict[str, Any], field: str, limit: int, setting: str) -> None:
    value = data.get(field)
    if isinstance(value, list) and len(value) > limit:
        raise InvalidRequest(
            f"`{field}` has {len(value)} items; at most {limit} are allowed (limits.{setting}).",
            param=field,
            code="too_many_items",
        )


def check_inputs(data: dict[str, Any], field: str, limits: LimitsSettings) -> None:
    """An `input` or `prompt` that is a list of texts, one token-id list, or token-id lists."""
    value = data.get(field)
    if not isinstance(value, list) or not value:
        return
    if isinstance(value[0], int):
        check_list(data, field, limits.max_token_ids, "max_token_ids")
        return
    check_list(data, field, limits.max_inputs, "max_inputs")
    if not isinstance(value[0], list):
        return  # texts (or not valid at all: validation says so)
    total = sum(len(item) for item in value if isinstance(item, list))
    if total > limits.max_token_ids:
        raise InvalidRequest(
            f"`{field}` holds {total} token ids; at most {limits.max_token_ids} are allowed "
            "(limits.max_token_ids).",
            param=field,
            code="too_many_items",
        )


def parse_body(
    raw: bytes, model: type[M], limits: LimitsSettings = _DEFAULT_LIMITS
) -> tuple[dict[str, Any], M]:
    """The body as a dict (to forward) and as the typed model (to read)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if too_deep(raw, limits.max_json_depth):
        raise InvalidRequest(
            f"The request body nests more than {limits.max_json_depth} levels deep "
            "(limits.max_json_depth).",
            code="too_deep",
        )
    model.check_sizes(data, limits)
    try:
        return data, model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from exc


async def parse_request(
    raw: bytes, model: type[M], limits: LimitsSettings
) -> tuple[dict[str, Any], M]:
    """`parse_body`, in a worker thread when the body is large."""
    if len(raw) >= limits.offload_parse_bytes:
        return await asyncio.to_thread(parse_body, raw, model, limits)
    return parse_body(raw, model, limits)


def _invalid(exc: ValidationError) -> InvalidRequest:
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    loc = first.get("loc", ())
    # OpenAI names the top-level field in `param`; the full path goes in the message.
    param = str(loc[0]) if loc else None
    where = " at `" + ".".join(str(part) for part in loc) + "`" if loc else ""
    return InvalidRequest(
        f"Invalid request{where}: {first.get('msg', 'invalid value')}.", param=param
    )
