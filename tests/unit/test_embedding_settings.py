"""The embedding worker's runtime choice: ONNX Runtime on the CPU, torch elsewhere."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.embedding.settings import EmbeddingWorkerSettings


def test_cpu_defaults_to_onnx_and_gpu_to_torch() -> None:
    assert EmbeddingWorkerSettings().runtime == "onnx"
    assert EmbeddingWorkerSettings(device="cuda").runtime == "torch"
    assert EmbeddingWorkerSettings(backend="torch").runtime == "torch"


def test_onnx_on_a_gpu_is_refused() -> None:
    with pytest.raises(ValidationError, match="CPU only"):
        EmbeddingWorkerSettings(backend="onnx", device="cuda")
