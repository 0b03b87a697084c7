"""Workloads: what each request of a scenario sends. Bodies are built once, up front, so the
load generator spends its time on the wire and not on JSON.

- `chat`: one short chat turn, streaming or not (`stream_options.include_usage` when streaming).
- `multi_turn`: conversations that resend their history each turn behind one long system
  prompt shared by all of them (the shared prefix prefix-aware routing keys on).
- `embeddings`: one sentence per request.
- `alternate`: two workloads taking turns (the soak's streaming and non-streaming mix).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import orjson

from benchmarks.loadgen import Call, Workload

WORDS = (
    "river",
    "stone",
    "amber",
    "lantern",
    "orchard",
    "meadow",
    "harbor",
    "violet",
    "summit",
    "ember",
    "cobalt",
    "willow",
    "quiet",
    "bright",
    "falls",
    "carries",
    "over",
    "under",
    "the",
    "a",
    "small",
    "ancient",
    "green",
    "signal",
)


def _chat_body(
    model: str,
    messages: list[dict[str, str]],
    stream: bool,
    max_tokens: int,
    extra: dict[str, object] | None = None,
) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        **(extra or {}),
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def chat(
    model: str,
    *,
    stream: bool,
    max_tokens: int,
    prompt: str = "Say hello.",
    extra: dict[str, object] | None = None,
) -> Workload:
    """`extra`: more body fields (vLLM's `ignore_eos`, to make every answer max_tokens long)."""
    messages = [{"role": "user", "content": prompt}]
    call = Call("/chat/completions", _chat_body(model, messages, stream, max_tokens, extra), stream)
    return lambda number: call


def sentences(count: int, seed: int = 0, words: int = 12) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + f" ({n})."
        for n in range(count)
    ]


def multi_turn(
    model: str,
    *,
    stream: bool,
    max_tokens: int,
    conversations: int = 64,
    turns: int = 4,
    system_words: int = 400,
    seed: int = 0,
) -> Workload:
    """Request n is turn n % turns of conversation (n // turns) % conversations."""
    rng = random.Random(seed)
    system = "You are a helpful assistant. Reference notes: " + " ".join(
        rng.choice(WORDS) for _ in range(system_words)
    )
    calls: list[Call] = []
    for conversation in range(conversations):
        messages = [{"role": "system", "content": system}]
        for turn in range(turns):
            messages.append({"role": "user", "content": f"Chat {conversation}, question {turn}?"})
            calls.append(
                Call("/chat/completions", _chat_body(model, messages, stream, max_tokens), stream)
            )
            messages.append({"role": "assistant", "content": " ".join(WORDS[:max_tokens])})
    return lambda number: calls[number % len(calls)]


def embeddings(model: str, texts: Sequence[str]) -> Workload:
    calls = [Call("/embeddings", orjson.dumps({"model": model, "input": t}), False) for t in texts]
    return lambda number: calls[number % len(calls)]


def alternate(first: Workload, second: Workload) -> Workload:
    return lambda number: second(number // 2) if number % 2 else first(number // 2)
