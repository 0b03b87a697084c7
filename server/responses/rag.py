"""RAG on the Responses API through chat's RAG step (server/services/rag_chat.py): the
conversation is shown to it as chat messages, and the context message it inserts comes back
as a system message item in the Responses input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.responses.items import TEXT_PARTS, Item
from server.services.rag_chat import RagChat, RagOutcome
from server.tenancy.principal import ANONYMOUS, Principal


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in TEXT_PARTS
        )
    return ""


def chat_view(items: Sequence[Item], instructions: Any) -> list[dict[str, Any]]:
    """The message items as chat messages (text only), after `instructions` as a system one."""
    messages = []
    if isinstance(instructions, str):
        messages.append({"role": "system", "content": instructions})
    messages += [
        {"role": item["role"], "content": _text(item.get("content"))}
        for item in items
        if item.get("type", "message") == "message" and "role" in item
    ]
    return messages


def _leading_system(items: Sequence[Item]) -> int:
    at = 0
    while at < len(items) and items[at].get("role") in {"system", "developer"}:
        at += 1
    return at


async def apply_rag(
    rag: RagChat,
    data: dict[str, Any],
    items: list[Item],
    model: str,
    request_id: str,
    principal: Principal = ANONYMOUS,
) -> tuple[list[Item], RagOutcome] | None:
    """The input items with the retrieved context, and chat's outcome (sources, headers), or
    None when RAG does not apply to this request."""
    messages = chat_view(items, data.get("instructions"))
    chat: dict[str, Any] = {"model": model, "messages": messages}
    if "rag" in data:
        chat["rag"] = data["rag"]
    if isinstance(data.get("max_output_tokens"), int):
        chat["max_tokens"] = data["max_output_tokens"]
    outcome = await rag.apply(chat, model, request_id, principal)
    if outcome is None:
        return None
    augmented = outcome.body["messages"]
    if len(augmented) != len(messages) + 1:
        return list(items), outcome  # nothing fitted, or retrieval failed open
    at = next((i for i, m in enumerate(messages) if augmented[i] is not m), len(messages))
    context = {"type": "message", "role": "system", "content": augmented[at]["content"]}
    place = _leading_system(items)
    return [*items[:place], context, *items[place:]], outcome
