"""The gateway reads the embedding worker's answer: base64 float32 (what it asks for) or floats
(a worker that ignores `encoding_format`), in index order, and refuses anything malformed."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from server.errors import UpstreamBadResponse
from server.rag.embedder import _vectors


def answer(*embeddings: object) -> bytes:
    data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(embeddings)]
    return orjson.dumps({"object": "list", "data": list(reversed(data)), "model": "m"})


def b64(values: list[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def test_base64_float32_decodes_to_the_same_vectors_as_floats() -> None:
    rows = [[0.25, -0.5, 1.0], [0.1, 0.2, 0.3]]
    decoded = _vectors(answer(*(b64(r) for r in rows)), 2)
    as_float32 = [np.asarray(r, dtype=np.float32).tolist() for r in rows]
    assert decoded == as_float32  # in index order, though the answer lists them reversed
    assert _vectors(answer(*rows), 2) == rows


@pytest.mark.parametrize(
    "embedding",
    ["not base64!", base64.b64encode(b"\0" * 6).decode(), None, ["x"]],
    ids=["bad-alphabet", "not-float32", "null", "strings"],
)
def test_malformed_embeddings_are_bad_upstream_answers(embedding: object) -> None:
    with pytest.raises(UpstreamBadResponse):
        _vectors(answer(embedding), 1)


def test_a_missing_vector_is_a_bad_upstream_answer() -> None:
    with pytest.raises(UpstreamBadResponse):
        _vectors(answer(b64([1.0])), 2)
