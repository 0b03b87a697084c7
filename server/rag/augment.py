"""Putting retrieved chunks into a chat request: pure functions, no I/O.

The context goes in as one system message, rendered from a template, right after the
conversation's own leading system (or developer) messages, so the caller's instructions stay
first. Chunks enter best-scoring first while they fit a token budget; the lowest-scoring ones
are dropped first. Tokens are counted by an injected function (the served model's tokenizer,
see tokens.py); one system message's framing and the joins between passages are allowed for
with fixed margins, since a tokenizer may merge across a join.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.rag.records import RetrievedChunk

Message = Mapping[str, Any]
# Tokens a chat template spends on one message's role markers (ChatML spends 5).
MESSAGE_FRAMING = 8
# Tokens for the blank line between two passages, and a merge across a join.
JOIN_TOKENS = 2
_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class Augmented:
    messages: list[Message]
    used: list[RetrievedChunk]
    dropped: int


def ranked(chunks: Sequence[RetrievedChunk]) -> list[RetrievedChunk]:
    return sorted(chunks, key=lambda c: c.score if c.score is not None else -2.0, reverse=True)


def passages(chunks: Sequence[RetrievedChunk]) -> list[str]:
    """Each chunk as the prompt shows it, numbered by rank, so that an answer can cite it."""
    return [f"[{i}] {chunk.label}\n{chunk.text}" for i, chunk in enumerate(ranked(chunks), 1)]


def render(template: str, parts: Sequence[str]) -> str:
    # str.replace, not str.format: documents are full of braces.
    return template.replace("{context}", _SEPARATOR.join(parts))


def texts_to_count(template: str, chunks: Sequence[RetrievedChunk]) -> list[str]:
    """Every text `augment` will ask its counter about, for counters that fetch counts ahead."""
    return [render(template, []), *passages(chunks)]


def whole_context(template: str, chunks: Sequence[RetrievedChunk]) -> str:
    """The context message's text with every chunk: counted first, since it usually fits, and
    then no passage needs counting on its own."""
    return render(template, passages(chunks))


def fits_whole(whole_tokens: int, budget: int) -> bool:
    return whole_tokens + MESSAGE_FRAMING <= budget


def context_budget(window: int, prompt_tokens: int, reserved: int, cap: int) -> int:
    """Tokens the context may take: what the window leaves after the prompt and the answer's
    reservation, and never more than `cap`."""
    return max(0, min(cap, window - prompt_tokens - reserved))


def _insert_at(messages: Sequence[Message]) -> int:
    at = 0
    while at < len(messages) and messages[at].get("role") in {"system", "developer"}:
        at += 1
    return at


def augment(
    messages: Sequence[Message],
    chunks: Sequence[RetrievedChunk],
    *,
    template: str,
    budget: int,
    count: Callable[[str], int],
    whole_tokens: int | None = None,
) -> Augmented:
    """`messages` with a context system message holding as many of the best chunks as fit in
    `budget` tokens. With none fitting, the messages come back unchanged. `whole_tokens`: the
    tokens of `whole_context`, if counted; when that fits, every chunk goes in uncounted."""
    order = ranked(chunks)
    parts = passages(order)
    if whole_tokens is not None and fits_whole(whole_tokens, budget):
        kept = len(parts)
    else:
        kept = _fitting(template, parts, budget, count)
    if kept == 0:
        return Augmented(list(messages), [], len(order))
    context = {"role": "system", "content": render(template, parts[:kept])}
    at = _insert_at(messages)
    return Augmented([*messages[:at], context, *messages[at:]], order[:kept], len(order) - kept)


def _fitting(template: str, parts: Sequence[str], budget: int, count: Callable[[str], int]) -> int:
    """How many of `parts`, best first, fit in `budget` counted one by one."""
    cost = count(render(template, [])) + MESSAGE_FRAMING
    kept = 0
    for part in parts:
        step = count(part) + JOIN_TOKENS
        if cost + step > budget:
            break
        cost += step
        kept += 1
    return kept


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def retrieval_query(messages: Sequence[Message], turns: int) -> str | None:
    """The last user turn, after up to `turns - 1` earlier user turns; None without one."""
    texts = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    picked = [t for t in texts[-turns:] if t.strip()]
    return "\n".join(picked) if picked else None
