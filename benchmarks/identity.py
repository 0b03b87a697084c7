"""Are the bytes a gateway relays the worker's own? The same request, with the same
`x-request-id` (the fake worker derives its answer's `id` from it), is sent direct and through
each gateway, streaming and not, and the answers are compared byte for byte, ids included."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from benchmarks.stats import DIRECT

REQUEST_ID = "bench-identity-0001"


def bodies(model: str, tokens: int) -> dict[str, dict[str, Any]]:
    chat = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": tokens}
    return {
        "stream": {**chat, "stream": True, "stream_options": {"include_usage": True}},
        "json": chat,
    }


def check(
    targets: Sequence[tuple[str, str, dict[str, str]]], model: str, tokens: int
) -> dict[str, dict[str, Any]]:
    """targets: (name, base URL, headers), one of them named `direct`."""
    answers: dict[str, dict[str, bytes]] = {}
    for name, base_url, headers in targets:
        with httpx.Client(
            base_url=base_url, headers={**headers, "x-request-id": REQUEST_ID}, timeout=30
        ) as client:
            answers[name] = {
                kind: client.post("/chat/completions", json=body).content
                for kind, body in bodies(model, tokens).items()
            }
    return {
        name: {kind: compare(answers[DIRECT][kind], got) for kind, got in mine.items()}
        for name, mine in answers.items()
        if name != DIRECT
    }


def compare(expected: bytes, got: bytes) -> dict[str, Any]:
    if expected == got:
        return {"identical": True, "bytes": len(got)}
    at = next(
        (i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
        min(len(expected), len(got)),
    )
    return {
        "identical": False,
        "bytes": len(got),
        "direct_bytes": len(expected),
        "first_difference": at,
        "direct": expected[max(0, at - 40) : at + 80].decode(errors="replace"),
        "gateway": got[max(0, at - 40) : at + 80].decode(errors="replace"),
    }
