"""augment(): the context system message, the token budget, and dropping the weakest first."""

from __future__ import annotations

from typing import Any

from server.rag.augment import (
    JOIN_TOKENS,
    MESSAGE_FRAMING,
    augment,
    context_budget,
    passages,
    retrieval_query,
    texts_to_count,
    whole_context,
)
from server.rag.records import RetrievedChunk

TEMPLATE = "Context:\n{context}"


def words(text: str) -> int:
    return len(text.split())


def chunk(name: str, score: float, size: int = 10) -> RetrievedChunk:
    text = " ".join([name] * size)
    return RetrievedChunk(f"id-{name}", text, {"document_id": name, "title": name.upper()}, score)


CHUNKS = [chunk("low", 0.2), chunk("high", 0.9), chunk("mid", 0.5)]
USER = {"role": "user", "content": "question"}


def cost(*chunks: RetrievedChunk) -> int:
    """What augment charges for a context holding `chunks`, in `words` tokens."""
    parts = passages(chunks)
    return (
        words(TEMPLATE.replace("{context}", ""))
        + MESSAGE_FRAMING
        + sum(words(p) + JOIN_TOKENS for p in parts)
    )


def run(messages: list[dict[str, Any]], budget: int) -> Any:
    return augment(messages, CHUNKS, template=TEMPLATE, budget=budget, count=words)


def test_everything_fits_best_first() -> None:
    result = run([USER], budget=1000)
    assert [c.id for c in result.used] == ["id-high", "id-mid", "id-low"]
    assert result.dropped == 0
    system, user = result.messages
    assert system["role"] == "system"
    content = system["content"]
    assert content.startswith("Context:\n[1] HIGH\nhigh high")
    assert content.index("[2] MID") < content.index("[3] LOW")
    assert user == USER


def test_lowest_scoring_chunks_are_dropped_first() -> None:
    high, mid, _ = sorted(CHUNKS, key=lambda c: -(c.score or 0))
    budget = cost(high, mid)  # exactly two fit
    result = run([USER], budget=budget)
    assert [c.id for c in result.used] == ["id-high", "id-mid"]
    assert result.dropped == 1
    assert "low" not in result.messages[0]["content"]
    assert run([USER], budget=budget - 1).dropped == 2


def test_nothing_fits_means_messages_unchanged() -> None:
    result = run([USER], budget=5)
    assert result.messages == [USER]
    assert result.used == []
    assert result.dropped == 3


def test_context_goes_after_the_callers_own_system_messages() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "No lists."},
        USER,
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again"},
    ]
    result = run(messages, budget=1000)
    assert [m["role"] for m in result.messages] == [
        "system", "developer", "system", "user", "assistant", "user",
    ]  # fmt: skip
    assert result.messages[2]["content"].startswith("Context:")


def test_template_braces_in_documents_are_safe() -> None:
    braces = RetrievedChunk("b", "json {a} {context} {}", {"document_id": "b"}, 0.5)
    result = augment([USER], [braces], template=TEMPLATE, budget=1000, count=words)
    assert "json {a} {context} {}" in result.messages[0]["content"]


def test_texts_to_count_cover_what_augment_asks() -> None:
    asked: list[str] = []

    def counting(text: str) -> int:
        asked.append(text)
        return words(text)

    augment([USER], CHUNKS, template=TEMPLATE, budget=1000, count=counting)
    assert set(asked) <= set(texts_to_count(TEMPLATE, CHUNKS))


def test_context_budget() -> None:
    assert context_budget(window=2048, prompt_tokens=100, reserved=256, cap=4096) == 1692
    assert context_budget(window=2048, prompt_tokens=100, reserved=256, cap=500) == 500
    assert context_budget(window=2048, prompt_tokens=2000, reserved=256, cap=500) == 0


def test_budget_keeps_the_request_inside_the_window() -> None:
    window, prompt, reserved = 120, 30, 20
    budget = context_budget(window, prompt, reserved, cap=10_000)
    result = run([USER], budget=budget)
    assert prompt + cost(*result.used) + reserved <= window
    assert result.used  # and something still fits


def test_retrieval_query_is_the_last_user_turn_plus_earlier_ones() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url"}]},
        {"role": "user", "content": "third"},
    ]
    assert retrieval_query(messages, 1) == "third"
    assert retrieval_query(messages, 2) == "second\nthird"
    assert retrieval_query(messages, 3) == "first\nsecond\nthird"
    assert retrieval_query([{"role": "system", "content": "x"}], 1) is None
    assert retrieval_query([{"role": "user", "content": "  "}], 1) is None


def test_a_whole_context_that_fits_keeps_every_chunk_uncounted() -> None:
    def no_count(text: str) -> int:
        raise AssertionError("passages are counted only when the whole does not fit")

    whole = words(whole_context(TEMPLATE, CHUNKS))
    result = augment(
        [USER],
        CHUNKS,
        template=TEMPLATE,
        budget=whole + MESSAGE_FRAMING,
        count=no_count,
        whole_tokens=whole,
    )
    assert [c.id for c in result.used] == ["id-high", "id-mid", "id-low"]
    assert result.messages[0]["content"] == whole_context(TEMPLATE, CHUNKS)


def test_a_whole_context_over_budget_is_cut_passage_by_passage() -> None:
    whole = words(whole_context(TEMPLATE, CHUNKS))
    budget = cost(CHUNKS[1])
    result = augment(
        [USER], CHUNKS, template=TEMPLATE, budget=budget, count=words, whole_tokens=whole
    )
    assert [c.id for c in result.used] == ["id-high"]
    assert result.dropped == 2
