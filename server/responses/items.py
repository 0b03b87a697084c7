"""Input items: checking what a client sends, rebuilding a conversation from stored turns, and
listing a response's input items. Pure functions, no I/O.

ragway checks items only as far as it must to store and replay them, and so that a malformed
one is a 400 naming it rather than a worker's 500: the item types the local vLLM worker accepts
(messages with text content, function calls and their outputs, reasoning). The rest of each
item is the worker's to judge and is forwarded unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from server.errors import InvalidRequest
from server.responses.store import StoredResponse

Item = dict[str, Any]
ROLES = frozenset({"user", "assistant", "system", "developer"})
TEXT_PARTS = frozenset({"input_text", "output_text", "text", "refusal", "reasoning_text"})
OTHER_PARTS = frozenset({"input_image", "input_file", "input_audio"})
# Fields that must be strings, per item type.
_STRING_FIELDS = {
    "function_call": ("call_id", "name", "arguments"),
    "function_call_output": ("call_id",),
    "reasoning": (),
}


def _bad(message: str, where: str, code: str = "invalid_input_item") -> InvalidRequest:
    return InvalidRequest(f"Invalid input item at `{where}`: {message}", param=where, code=code)


def _check_content(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad("`content` must be a string or a list of content parts.", f"{where}.content")
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in TEXT_PARTS:
            if not isinstance(part.get("text", part.get("refusal")), str):
                raise _bad(f"a `{kind}` part needs a string `text`.", at)
        elif kind not in OTHER_PARTS:
            raise _bad(f"unsupported content part type {kind!r}.", at)


def _check_item(item: Any, where: str) -> None:
    if not isinstance(item, Mapping):
        raise _bad("an item must be an object.", where)
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        if item.get("role") not in ROLES:
            raise _bad(f"`role` must be one of {sorted(ROLES)}.", f"{where}.role")
        _check_content(item.get("content"), where)
        return
    if kind not in _STRING_FIELDS:
        raise _bad(
            f"unsupported item type {kind!r}; ragway accepts message, function_call, "
            "function_call_output and reasoning items.",
            f"{where}.type",
        )
    for name in _STRING_FIELDS[kind]:
        if not isinstance(item.get(name), str):
            raise _bad(f"a {kind} item needs a string `{name}`.", f"{where}.{name}")
    if kind == "function_call_output" and not isinstance(item.get("output"), str | list):
        raise _bad("`output` must be a string or a list.", f"{where}.output")


def input_items(value: Any) -> list[Item]:
    """The request's `input` as a list of items; a plain string is one user message."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text",
                                                                  "text": value}]}]  # fmt: skip
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            "`input` must be a string or a non-empty list of items.", param="input"
        )
    for index, item in enumerate(value):
        _check_item(item, f"input[{index}]")
    return [dict(item) for item in value]


def replayable(output: Iterable[Item]) -> list[Item]:
    """A response's output items as input for the next turn: the kinds a worker accepts back."""
    return [item for item in output if item.get("type") in {"message", *_STRING_FIELDS}]


def history(turns: Sequence[StoredResponse]) -> list[Item]:
    """The conversation so far, oldest first: each turn's input items, then its output."""
    items: list[Item] = []
    for turn in turns:
        items += turn.input_items
        items += replayable(turn.output)
    return items


def listed(response_id: str, items: Sequence[Item]) -> list[Item]:
    """Input items as `GET /v1/responses/{id}/input_items` shows them: each with an id (stable:
    derived from the response's id and the item's place) and messages with content parts."""
    shown = []
    for index, item in enumerate(items):
        entry = {"id": f"{response_id}_in{index}", **item}
        if "role" in entry:
            entry.setdefault("type", "message")
            if isinstance(entry.get("content"), str):
                kind = "output_text" if entry["role"] == "assistant" else "input_text"
                entry["content"] = [{"type": kind, "text": entry["content"]}]
        shown.append(entry)
    return shown
