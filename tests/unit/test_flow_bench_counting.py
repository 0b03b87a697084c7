"""The flow benchmark counts the batch tenant's tokens, not its chunks (benchmarks/flow_load.py):
a coalesced stream (vLLM's `stream_interval`) carries several tokens per chunk."""

from __future__ import annotations

import orjson

from benchmarks.flow_load import Tally, chunk_tokens, figures


def _line(content: str | None, completion_tokens: int | None = None) -> bytes:
    """A `data:` line shaped as vLLM 0.32 sends a chat chunk."""
    chunk: dict[str, object] = {"id": "chatcmpl-1", "object": "chat.completion.chunk",
                                "model": "m", "choices": []}  # fmt: skip
    if content is not None:
        chunk["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    if completion_tokens is not None:
        chunk["usage"] = {"prompt_tokens": 9, "completion_tokens": completion_tokens,
                          "total_tokens": 9 + completion_tokens}  # fmt: skip
    return b"data: " + orjson.dumps(chunk) + b"\n"


def _count(lines: list[bytes]) -> list[int]:
    counted, found = 0, []
    for line in lines:
        new, _ = chunk_tokens(line, counted)
        counted += new
        found.append(new)
    return found


def test_coalesced_chunks_count_the_growth_of_their_usage() -> None:
    # The first token alone, then 16 at a time, the last 3, then the closing usage chunk.
    lines = [_line("", 0), _line("Once", 1), _line(" upon" * 16, 17), _line(" a" * 3, 20),
             _line(None, 20)]  # fmt: skip
    assert _count(lines) == [0, 1, 16, 3, 0]


def test_per_token_chunks_with_usage_count_one_each() -> None:
    lines = [_line("", 0), *(_line("x", n) for n in range(1, 6)), _line(None, 5)]
    assert sum(_count(lines)) == 5


def test_without_usage_per_chunk_each_text_event_is_one_and_the_last_usage_adds_nothing() -> None:
    lines = [_line(""), *(_line("x") for _ in range(4)), _line(None, 4)]
    assert _count(lines) == [0, 1, 1, 1, 1, 0]


def test_tokens_without_text_still_count() -> None:
    """A chunk can carry tokens and no text yet (a character still incomplete)."""
    assert _count([_line("", 0), _line("a", 1), _line("", 2), _line("\u00e9", 3)]) == [0, 1, 1, 1]


def test_text_marks_the_first_token() -> None:
    assert chunk_tokens(_line("", 0), 0) == (0, False)
    assert chunk_tokens(_line("Hi", 1), 0) == (1, True)


def test_throughput_sums_the_tokens_of_chunks_in_the_window() -> None:
    batch = Tally(token_times=[(0.5, 16), (1.2, 16), (1.9, 1), (3.5, 16)])
    raw = {"window": (1.0, 3.0), "interactive": Tally(), "batch": batch, "samples": []}
    got = figures(raw)
    assert got["batch_tokens_s"] == 17 / 2.0  # the chunks at 1.2 s and 1.9 s
    assert got["batch_tokens_per_chunk"] == 8.5
    assert got["batch_token_series"] == [16, 17, 0, 16]
